"""The segmentation-free plate reader: its NumPy forward pass against PyTorch's (or, without PyTorch,
against a convolution written another way), the CTC best-path decode with the grammar, rendered
plates read whole, and the held-out CCPD crops (skipped when ``../shared/data`` is absent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from crosspark.identity import PlateColor
from crosspark.plate import ALPHABET
from recognition_core import pipeline
from recognition_core.reader import (
    BLANK,
    INPUT_SHAPE,
    PlateReader,
    _pool,
    best_path,
    conv2d,
    decode_columns,
    load_reader,
)

CCPD = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "alpr" / "ccpd-crops-dev"
#: A few points under the shipped weights' held-out figure, 0.84 (``weights/reader.json``).
HELD_OUT_FLOOR = 0.81


def _conv_by_shifts(x: np.ndarray, w: np.ndarray, b: np.ndarray, kh: int, kw: int, ph: int, pw: int) -> np.ndarray:
    """The same convolution as a sum of shifted products (no im2col), for comparison."""
    n, h, wd, c = x.shape
    padded = np.pad(x, ((0, 0), (ph, ph), (pw, pw), (0, 0)))
    oh, ow = h + 2 * ph - kh + 1, wd + 2 * pw - kw + 1
    out = np.zeros((n, oh, ow, w.shape[1]), np.float64)
    wk = w.reshape(kh, kw, c, -1)
    for dy in range(kh):
        for dx in range(kw):
            out += np.einsum("nhwc,co->nhwo", padded[:, dy : dy + oh, dx : dx + ow], wk[dy, dx])
    return out + b


@pytest.mark.parametrize(("kh", "kw", "ph", "pw"), [(3, 3, 1, 1), (3, 1, 0, 0), (1, 3, 0, 1), (1, 1, 0, 0)])
def test_conv_equals_a_sum_of_shifted_products(kh: int, kw: int, ph: int, pw: int) -> None:
    rng = np.random.default_rng(kh * 10 + kw)
    x = rng.normal(size=(2, 3, 7, 4)).astype(np.float32)
    w = rng.normal(size=(kh * kw * 4, 5)).astype(np.float32)
    b = rng.normal(size=5).astype(np.float32)
    got = conv2d(x, w, b, kh, kw, ph, pw, relu=False)
    np.testing.assert_allclose(got, _conv_by_shifts(x, w, b, kh, kw, ph, pw), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("pool", [(2, 2), (2, 1)])
def test_a_conv_pooled_before_its_bias_and_relu_equals_one_pooled_after(pool: tuple[int, int]) -> None:
    rng = np.random.default_rng(pool[1])
    x = rng.normal(size=(3, 6, 9, 4)).astype(np.float32)  # odd width: the pool drops a ragged column
    w = rng.normal(size=(9 * 4, 5)).astype(np.float32)
    b = rng.normal(size=5).astype(np.float32)
    got = conv2d(x, w, b, 3, 3, 1, 1, relu=True, pool=pool)
    np.testing.assert_array_equal(got, _pool(conv2d(x, w, b, 3, 3, 1, 1, relu=True), *pool))


def _torch_forward_or_reference(params: dict[str, np.ndarray], plates: np.ndarray) -> tuple[np.ndarray, object]:
    """The PyTorch network's probabilities on ``plates`` (its weights exported into ``params``) when
    PyTorch is installed; otherwise the shifted-product forward pass of the shipped weights."""
    try:
        import torch

        from recognition_core.train.reader import ReaderNet, export_params
    except ImportError:
        shipped = load_reader()
        return shipped.column_proba(plates), None
    torch.manual_seed(0)
    model = ReaderNet()
    for mod in model.modules():  # batch norm statistics away from the identity, so folding matters
        if isinstance(mod, torch.nn.BatchNorm2d):
            mod.running_mean.uniform_(-0.3, 0.3)
            mod.running_var.uniform_(0.5, 2.0)
            mod.weight.data.uniform_(0.5, 1.5)
            mod.bias.data.uniform_(-0.3, 0.3)
    model.eval()
    params.update(export_params(model))
    with torch.no_grad():
        return model(torch.from_numpy(plates)).softmax(2).numpy(), model


def _forward_by_shifts(params: dict[str, np.ndarray], plates: np.ndarray) -> np.ndarray:
    x = plates.astype(np.float64)[..., None] / 255.0 - 0.5
    conv = 0
    for spec in str(params["layers"]).split(","):
        kind, *args = spec.split(":")
        nums = [int(a) for a in args]
        if kind == "conv":
            conv += 1
            x = _conv_by_shifts(x, params[f"w{conv}"], params[f"b{conv}"], *nums[:4])
            if nums[4]:
                x = np.maximum(x, 0.0)
        else:
            n, h, w, c = x.shape
            x = x[:, : h - h % nums[0], : w - w % nums[1]].reshape(n, h // nums[0], nums[0], w // nums[1], nums[1], c)
            x = x.max(axis=(2, 4))
    logits = x[:, 0]
    e = np.exp(logits - logits.max(axis=2, keepdims=True))
    return e / e.sum(axis=2, keepdims=True)


def test_numpy_forward_equals_the_training_network() -> None:
    plates = np.random.default_rng(1).integers(0, 256, (3, *INPUT_SHAPE), dtype=np.uint8)
    params: dict[str, np.ndarray] = {}
    expected, model = _torch_forward_or_reference(params, plates)
    if model is None:  # no PyTorch: the shipped weights, against the shifted-product forward pass
        with np.load(Path(__file__).resolve().parents[2] / "recognition_core" / "weights" / "reader.npz") as data:
            params = {k: data[k] for k in data.files}
        expected = _forward_by_shifts(params, plates)
        got = load_reader().column_proba(plates)
    else:
        got = PlateReader(params).column_proba(plates)
    assert got.shape == (3, INPUT_SHAPE[1] // 4, len(ALPHABET) + 1)
    np.testing.assert_allclose(got, expected, atol=1e-5)


def _columns(text: str, noise: float = 0.02) -> np.ndarray:
    """Column probabilities spelling ``text`` as 'c c blank' per character over 24 columns."""
    proba = np.full((24, len(ALPHABET) + 1), noise / len(ALPHABET), np.float64)
    proba[:, BLANK] = 1 - noise
    for i, ch in enumerate(text):
        for t in (3 * i, 3 * i + 1):
            proba[t] = noise / len(ALPHABET)
            proba[t, ALPHABET.index(ch)] = 1 - noise
    return proba


def test_best_path_merges_repeats_and_drops_blanks() -> None:
    text, peaks = best_path(_columns("京A88888"))
    assert (text, len(peaks)) == ("京A88888", 7)


def test_decode_columns_puts_the_grammar_over_the_best_path() -> None:
    proba = _columns("京812345")  # the second slot holds a letter: the runner-up 'B' beats the '8'
    for t in (3, 4):
        proba[t, ALPHABET.index("8")], proba[t, ALPHABET.index("B")] = 0.6, 0.35
    read = decode_columns(proba)
    assert read is not None and read[0] == "京B12345"


def test_decode_columns_refuses_a_path_of_six_characters() -> None:
    assert decode_columns(_columns("京A1234")) is None


@pytest.mark.parametrize(
    ("plate", "color"),
    [("京A12345", PlateColor.BLUE), ("粤B8K3X9", PlateColor.YELLOW), ("沪AD12345", PlateColor.GREEN)],
)
def test_rendered_plates_read_whole(plate: str, color: PlateColor) -> None:
    from recognition_core.synth import render_plate

    rendered = render_plate(plate, color, px_per_mm=0.4, rng=np.random.default_rng(0), fonts=(0, 0))
    read = load_reader().read(rendered.image)
    assert read is not None and read[0] == plate


def test_pipeline_reader_is_selectable(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="unknown plate reader"):
        pipeline.reader_kind("ocr")
    monkeypatch.setenv("CROSSPARK_PLATE_READER", "segment")
    assert (pipeline.reader_kind(), pipeline.reader_kind("sequence")) == ("segment", "sequence")


def _rows(plate: str, p: float = 0.9, slot: int | None = None, other: str = "", q: float = 0.0) -> np.ndarray:
    """Per-slot probabilities spelling ``plate`` with probability ``p`` each; in ``slot``,
    ``other`` gets ``q`` of it."""
    rows = np.full((len(plate), len(ALPHABET)), 1e-4)
    for i, ch in enumerate(plate):
        rows[i, ALPHABET.index(ch)] = p
    if slot is not None:
        rows[slot, ALPHABET.index(other)] = q
    return rows / rows.sum(axis=1, keepdims=True)


def _read(plate: str, rows: np.ndarray) -> pipeline._Read:
    return pipeline._Read(plate, PlateColor.BLUE, float(rows.max(axis=1).min()), rows)


def test_combined_reader_is_surer_when_both_readers_agree() -> None:
    a, b = _rows("京A12345", 0.7), _rows("京A12345", 0.8)
    read = pipeline._fused(_read("京A12345", a), _read("京A12345", b))
    assert read is not None and read.plate == "京A12345" and read.confidence > 0.8


def test_combined_reader_decides_a_disputed_slot_on_both_opinions() -> None:
    # the segmenting reader is torn between 1 and 7 in the last slot; the sequence reader is sure of 7
    seg = _rows("京A12341", 0.5, slot=6, other="7", q=0.45)
    seq = _rows("京A12347", 0.9)
    read = pipeline._fused(_read("京A12341", seg), _read("京A12347", seq))
    assert read is not None and read.plate == "京A12347"


def test_combined_reader_is_no_surer_of_a_disputed_slot_than_the_reader_backing_it() -> None:
    # the dev photos' 浙A546J4: one reader 1 at 0.75 (J 0.25), the other J at 0.34 (1 about 0):
    # the product makes J the better, but only as sure as the 0.34 behind it, not 0.9
    seq = _rows("京A12341", 0.75, slot=6, other="J", q=0.25)
    seg = _rows("京A1234J", 0.9)
    seg[6] = 1e-4
    seg[6, [ALPHABET.index("J"), ALPHABET.index("T"), ALPHABET.index("7")]] = 0.34, 0.33, 0.32
    read = pipeline._fused(_read("京A1234J", seg), _read("京A12341", seq))
    assert read is not None and read.plate == "京A1234J"
    assert read.confidence <= 0.34 + 1e-9


def test_combined_reader_is_unsure_where_both_readers_are_sure_of_different_characters() -> None:
    read = pipeline._fused(_read("京A12341", _rows("京A12341", 0.9)), _read("京A12347", _rows("京A12347", 0.9)))
    assert read is not None and read.confidence < 0.6  # about even between the two


def test_combined_reader_discounts_a_read_that_only_one_reader_makes() -> None:
    alone = _read("京A12345", _rows("京A12345", 0.9))
    read = pipeline._fused(None, alone)
    assert read is not None and read.plate == "京A12345"
    assert read.confidence == pytest.approx(alone.confidence * pipeline.ALONE_DISCOUNT)
    assert pipeline._fused(None, None) is None


def test_combined_reader_leaves_out_cuts_where_the_sequence_reader_sees_no_plate(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    segmented = []
    monkeypatch.setattr(pipeline, "_sequence_reads", lambda cuts, tight: [None] * len(cuts))
    monkeypatch.setattr(pipeline, "_read_crop", lambda *a: segmented.append(a) or _read("京A12345", _rows("京A12345")))
    assert pipeline._read_cut("combined", np.zeros((56, 180, 3), np.uint8), PlateColor.BLUE, tight=False) is None
    assert segmented == []


@pytest.fixture(scope="module")
def held_out() -> list:
    if not CCPD.is_dir():
        pytest.skip(f"dev data absent: {CCPD} (see shared/data/README.md)")
    from recognition_core.train.ccpd import holdout, load_crops

    return [crop for crop in load_crops(CCPD) if holdout(crop.name)]


def test_held_out_ccpd_crops_read_exactly_above_floor(held_out: list) -> None:
    reader = load_reader()
    hits = 0
    for crop in held_out:
        read = reader.read(crop.bgr)
        hits += read is not None and read[0] == crop.plate
    assert len(held_out) >= 100 and hits / len(held_out) >= HELD_OUT_FLOOR


def test_a_cut_out_plate_keeps_a_read_that_only_one_reader_makes(monkeypatch: pytest.MonkeyPatch) -> None:
    whole = _read("京A12345", _rows("京A12345", 0.9))
    monkeypatch.setattr(pipeline, "_read_crop", lambda *a: None)
    monkeypatch.setattr(pipeline, "_read_sequence", lambda crop, tight: whole)
    rec = pipeline.recognize_crop(np.zeros((24, 94, 3), np.uint8), reader="combined")
    assert rec is not None and rec.identity.plate == "京A12345"
    assert rec.identity.confidence == pytest.approx(whole.confidence, abs=1e-4)
