import cv2
import numpy as np
import pytest

from crosspark.plate import ALPHABET
from recognition_core.classify import GLYPH_SHAPE, CharClassifier, _isolate_character, load_classifier, prepare_glyph

K = len(ALPHABET)


def random_params(seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    params: dict[str, np.ndarray] = {"alphabet": np.array(ALPHABET)}
    c_in = 1
    for i, c_out in enumerate((4, 6, 8), start=1):
        params[f"conv{i}_w"] = rng.normal(0, 0.5, (9 * c_in, c_out)).astype(np.float32)
        params[f"conv{i}_b"] = rng.normal(0, 0.1, c_out).astype(np.float32)
        c_in = c_out
    params["fc1_w"] = rng.normal(0, 0.2, (4 * 2 * 8, 10)).astype(np.float32)
    params["fc1_b"] = rng.normal(0, 0.1, 10).astype(np.float32)
    params["fc2_w"] = rng.normal(0, 0.2, (10, K)).astype(np.float32)
    params["fc2_b"] = rng.normal(0, 0.1, K).astype(np.float32)
    return params


def reference_forward(params: dict[str, np.ndarray], glyphs: np.ndarray) -> np.ndarray:
    """The same network written as plain loops: 3x3 'same' convolution, ReLU, 2x2 max-pool."""
    x = glyphs.astype(np.float64)[..., None] / 255.0 - 0.5
    for i in (1, 2, 3):
        n, h, w, c = x.shape
        weights = params[f"conv{i}_w"].reshape(3, 3, c, -1)
        padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
        y = np.zeros((n, h, w, weights.shape[-1])) + params[f"conv{i}_b"]
        for dy in range(3):
            for dx in range(3):
                y += np.einsum("nhwc,co->nhwo", padded[:, dy : dy + h, dx : dx + w], weights[dy, dx])
        y = np.maximum(y, 0)
        x = y.reshape(n, h // 2, 2, w // 2, 2, -1).max(axis=(2, 4))
    hidden = np.maximum(x.reshape(len(x), -1) @ params["fc1_w"] + params["fc1_b"], 0)
    logits = hidden @ params["fc2_w"] + params["fc2_b"]
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def test_numpy_forward_matches_the_loop_reference():
    params = random_params(0)
    glyphs = np.random.default_rng(1).integers(0, 256, (5, *GLYPH_SHAPE), dtype=np.uint8)
    got = CharClassifier(params).predict_proba(glyphs)
    assert np.allclose(got, reference_forward(params, glyphs), atol=1e-5)


def test_classifier_refuses_weights_for_another_alphabet():
    params = random_params(0)
    params["alphabet"] = np.array(ALPHABET[:-1])
    with pytest.raises(ValueError):
        CharClassifier(params)


def test_prepare_glyph_gives_the_glyph_shape_in_uint8():
    cut = np.random.default_rng(2).integers(0, 256, (23, 11), dtype=np.uint8)
    glyph = prepare_glyph(cut)
    assert glyph.shape == GLYPH_SHAPE and glyph.dtype == np.uint8


def test_prepare_glyph_trims_dark_margins_and_fills_the_height():
    cut = np.zeros((60, 60), np.uint8)
    cut[10:50, 25:45] = 255  # a 40 x 20 bright bar in a wide dark frame
    glyph = prepare_glyph(cut)
    assert glyph[:, 8].min() > 200  # the bar spans the whole height after trimming


def test_prepare_glyph_keeps_a_narrow_character_narrow():
    cut = np.zeros((40, 20), np.uint8)
    cut[:, 8:12] = 255  # a '1'
    glyph = prepare_glyph(cut)
    assert (glyph.max(axis=0) > 128).sum() <= 4


def test_prepare_glyph_leaves_out_pieces_of_the_neighbours():
    cut = np.zeros((40, 40), np.uint8)
    cut[2:38, 16:24] = 255  # the character, in the middle
    cut[2:38, 0:3] = 255  # the right stroke of the left neighbour
    cut[2:38, 37:40] = 255  # the left stroke of the right neighbour
    glyph = prepare_glyph(cut)
    assert glyph[:, 8].min() > 200 and glyph[:, 0].max() < 64 and glyph[:, 15].max() < 64


def test_prepare_glyph_keeps_the_pieces_of_a_split_character():
    cut = np.zeros((40, 24), np.uint8)
    for x in (3, 10, 17):  # 川: three strokes, three components
        cut[4:36, x : x + 3] = 255
    row = prepare_glyph(cut)[16] > 128
    assert np.count_nonzero(row[1:] & ~row[:-1]) + row[0] == 3  # three strokes across the middle row


def test_prepare_glyph_drops_a_frame_line_along_the_top():
    cut = np.zeros((44, 22), np.uint8)
    cut[0:3, :] = 255  # the plate's frame
    cut[8:40, 9:13] = 255  # a '1'
    glyph = prepare_glyph(cut)
    assert glyph[0].max() > 200 and (glyph.max(axis=0) > 128).sum() <= 4  # the bar now fills the height


def _isolate_by_arrays(cut: np.ndarray) -> np.ndarray:
    """``_isolate_character`` written over NumPy arrays of the component statistics."""
    h, w = cut.shape
    _, ink = cv2.threshold(cut, 0, 1, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    if count <= 1:
        return cut
    x0s, y0s = stats[1:, cv2.CC_STAT_LEFT], stats[1:, cv2.CC_STAT_TOP]
    x1s, y1s = x0s + stats[1:, cv2.CC_STAT_WIDTH], y0s + stats[1:, cv2.CC_STAT_HEIGHT]
    areas = stats[1:, cv2.CC_STAT_AREA].copy()
    slab = (x1s - x0s >= 0.9 * w) & (y1s - y0s <= 0.45 * h) & ((y0s == 0) | (y1s == h))
    if slab.all():
        return cut
    areas[slab] = 0
    mid, reach = w / 2, max(1.0, 0.12 * w)
    central = (x0s <= mid + reach) & (x1s >= mid - reach) & (areas >= 0.15 * areas.max())
    if not central.any():
        central = areas == areas.max()
    cx = (x0s[central].min() + x1s[central].max()) / 2
    inside = np.minimum(x1s, cx + 0.3 * h) - np.maximum(x0s, cx - 0.3 * h)
    keep = (central | (inside >= 0.6 * (x1s - x0s))) & ~slab
    lookup = np.zeros(count, np.uint8)
    lookup[1:][keep] = 1
    foreign = (ink == 1) & (lookup[labels] == 0)
    out = cut.copy()
    out[foreign] = np.minimum(out[foreign], 63)
    return out[y0s[keep].min() : y1s[keep].max(), x0s[keep].min() : x1s[keep].max()]


@pytest.mark.parametrize("seed", range(30))
def test_isolating_the_character_matches_the_array_reference(seed):
    rng = np.random.default_rng(seed)
    h, w = int(rng.integers(16, 50)), int(rng.integers(10, 40))
    cut = rng.integers(0, 12, (h, w), dtype=np.uint8)
    for _ in range(rng.integers(1, 6)):  # strokes and specks: the character, neighbours, dirt
        x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h // 2))
        cut[y0 : y0 + int(rng.integers(1, h)), x0 : x0 + int(rng.integers(1, 5))] = rng.integers(150, 256)
    if rng.random() < 0.4:  # a frame line along the top or the bottom
        rows = slice(0, int(rng.integers(1, 4))) if rng.random() < 0.5 else slice(h - int(rng.integers(1, 4)), h)
        cut[rows, :] = 220
    np.testing.assert_array_equal(_isolate_character(cut), _isolate_by_arrays(cut))


def test_prepare_glyph_accepts_a_flat_cut():
    glyph = prepare_glyph(np.full((10, 5), 77, np.uint8))
    assert glyph.shape == GLYPH_SHAPE


@pytest.mark.parametrize("shape", [(0, 5), (5, 0), (4, 4, 3)])
def test_prepare_glyph_rejects_anything_but_a_2d_cut(shape):
    with pytest.raises(ValueError):
        prepare_glyph(np.zeros(shape, np.uint8))


def test_shipped_classifier_is_loaded_once():
    assert load_classifier() is load_classifier()


def test_shipped_classifier_gives_one_distribution_per_glyph():
    glyphs = np.random.default_rng(3).integers(0, 256, (8, *GLYPH_SHAPE), dtype=np.uint8)
    proba = load_classifier().predict_proba(glyphs)
    assert proba.shape == (8, K) and proba.dtype == np.float32
    assert np.allclose(proba.sum(axis=1), 1.0, atol=1e-5)


def test_shipped_classifier_accepts_an_empty_batch():
    assert load_classifier().predict_proba(np.zeros((0, *GLYPH_SHAPE), np.uint8)).shape == (0, K)


def test_shipped_classifier_rejects_glyphs_of_another_size():
    with pytest.raises(ValueError):
        load_classifier().predict_proba(np.zeros((2, 24, 12), np.uint8))
