"""Character segmentation: the Cython kernels against their NumPy twins, and cuts of drawn and real plates."""

from __future__ import annotations

import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from recognition_core import _reference, _segment_cy, segment
from tests.unit.test_recog_locate import draw_plate


def plate_gray(px_per_mm: float = 0.4, **kwargs: object) -> tuple[np.ndarray, list[tuple]]:
    plate, boxes = draw_plate(px_per_mm, **kwargs)  # type: ignore[arg-type]
    return cv2.cvtColor(plate, cv2.COLOR_BGR2GRAY), boxes


def ccpd_crops(shared_data: Path, n: int) -> list[tuple[str, np.ndarray]]:
    folder = shared_data / "alpr" / "ccpd-crops-dev"
    if not folder.is_dir():
        pytest.skip(f"no plate crops at {folder}")
    files = sorted(folder.glob("*.jpg"))[:n]
    return [(re.sub(r"_\d+$", "", f.stem), cv2.imread(str(f))) for f in files]


# --- kernels against their references -------------------------------------------------------------


@pytest.mark.parametrize("window", [(0, 0, 0.0, 0), (1, 1, 0.0, 2), (3, 2, 0.06, 4), (14, 14, 0.5, 6), (40, 2, 1.0, 0)])
@pytest.mark.parametrize("shape", [(1, 1), (2, 9), (9, 2), (33, 101)])
def test_binarize_local_matches_reference_on_random_pixels(shape: tuple[int, int], window: tuple) -> None:
    gray = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    ink, rows = _segment_cy.binarize_local(gray, *window)
    ref_ink, ref_rows = _reference.binarize_local(gray, *window)
    np.testing.assert_array_equal(ink, ref_ink)
    np.testing.assert_array_equal(rows, ref_rows)


def test_binarize_local_matches_reference_on_real_crops(shared_data: Path) -> None:
    for _, crop in ccpd_crops(shared_data, 5):
        gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
        for got, want in zip(
            _segment_cy.binarize_local(gray, 6, 6, 0.06, 4), _reference.binarize_local(gray, 6, 6, 0.06, 4), strict=True
        ):
            np.testing.assert_array_equal(got, want)


def test_binarize_local_refuses_windows_too_large_for_its_integers() -> None:
    with pytest.raises(ValueError):
        _segment_cy.binarize_local(np.zeros((4, 4), np.uint8), 2000, 2000, 0.1, 0)


def test_fit_slots_matches_reference() -> None:
    rng = np.random.default_rng(3)
    profile = rng.random(140) * 20
    lefts, widths = segment.LAYOUTS[7]
    scales = np.linspace(20, 32, 9)
    args = (-5.0, 140.0, 0.5, 1.0, 0.7, 0.1)
    got = _segment_cy.fit_slots(profile, lefts, widths, scales, *args)
    np.testing.assert_allclose(got, _reference.fit_slots(profile, lefts, widths, scales, *args))


def test_fit_slots_finds_the_layout_it_was_drawn_from() -> None:
    lefts, widths = segment.LAYOUTS[7]
    profile = np.zeros(200)
    for left, width in zip(lefts, widths, strict=True):
        a = 17 + 30 * left
        profile[int(a) + 1 : int(a + 30 * width) - 1] = 10
    scales = np.array([26.0, 28.0, 30.0, 32.0, 34.0])
    scores = _segment_cy.fit_slots(profile, lefts, widths, scales, 0.0, 60.0, 0.5, 1.0, 0.7, 0.1)
    si, oi = np.unravel_index(int(np.argmax(scores)), scores.shape)
    assert scales[si] == 30.0
    assert oi * 0.5 == pytest.approx(17.0, abs=1.0)


def test_fit_slots_scores_a_template_past_the_edge_minus_infinity() -> None:
    lefts, widths = segment.LAYOUTS[7]
    scores = _segment_cy.fit_slots(np.ones(50), lefts, widths, np.array([30.0]), 0.0, 10.0, 1.0, 1.0, 0.7, 0.1)
    assert np.isneginf(scores).all()


# --- segmentation ----------------------------------------------------------------------------------


def test_a_drawn_plate_is_cut_into_seven_characters_where_they_were_drawn() -> None:
    gray, truth = plate_gray()
    seg = segment.segment(gray, 7)
    assert seg is not None
    assert len(seg.boxes) == len(seg.glyphs) == 7
    for (x, _, w, _), (t0, _, t1, _) in zip(seg.boxes, truth, strict=True):
        centre = x + w / 2
        assert t0 - 2 <= centre <= t1 + 2


def test_a_province_character_in_pieces_is_one_cut() -> None:
    gray, truth = plate_gray(bars=3)
    seg = segment.segment(gray, 7)
    assert seg is not None
    x, _, w, _ = seg.boxes[0]
    t0, _, t1, _ = truth[0]
    # the three bars of the first character all fall inside its one cut
    assert x <= t0 + 0.2 * (t1 - t0) and x + w >= t1 - 0.2 * (t1 - t0)
    assert seg.boxes[1][0] >= x + w - 1


def test_the_separator_dot_gets_no_cut_of_its_own() -> None:
    gray, truth = plate_gray()
    seg = segment.segment(gray, 7)
    assert seg is not None
    dot_x = (truth[1][2] + truth[2][0]) / 2
    assert not any(x + 1 < dot_x < x + w - 1 for x, _, w, _ in seg.boxes[1:3])


def test_glyph_cuts_hold_bright_strokes_on_dark() -> None:
    gray, _ = plate_gray()
    seg = segment.segment(gray, 7)
    assert seg is not None
    for glyph in seg.glyphs:
        assert glyph.ndim == 2 and glyph.size > 0
        assert int(glyph.max()) - int(glyph.min()) > 100
    for glyph in seg.glyphs[1:]:
        assert glyph[:, 0].mean() < 128  # a letter's or digit's cut has background at its sides


def test_a_leaning_plate_is_sheared_upright() -> None:
    gray, _ = plate_gray()
    h = gray.shape[0]
    leaning = cv2.warpAffine(
        gray, np.array([[1.0, 0.2, -0.2 * h / 2], [0.0, 1.0, 0.0]]), gray.shape[::-1], borderMode=cv2.BORDER_REPLICATE
    )
    seg = segment.segment(leaning, 7)
    assert seg is not None
    assert seg.shear == pytest.approx(-0.2, abs=0.07)


def test_a_slightly_turned_plate_is_levelled() -> None:
    gray, _ = plate_gray()
    h, w = gray.shape
    turned = cv2.warpAffine(
        gray, cv2.getRotationMatrix2D((w / 2, h / 2), 6.0, 1.0), (w, h), borderMode=cv2.BORDER_REPLICATE
    )
    seg = segment.segment(turned, 7)
    assert seg is not None
    assert seg.tilt != 0.0
    assert len(seg.boxes) == 7


def test_the_plate_outline_is_drawn_from_the_characters() -> None:
    gray, _ = plate_gray(px_per_mm=0.4)
    seg = segment.segment(gray, 7)
    assert seg is not None
    x0, y0 = seg.plate_corners.min(axis=0)
    x1, y1 = seg.plate_corners.max(axis=0)
    h, w = gray.shape
    assert abs(x0) <= 0.05 * w and abs(x1 - w) <= 0.05 * w
    assert abs(y0) <= 0.1 * h and abs(y1 - h) <= 0.1 * h


def test_an_eight_character_layout_gives_eight_cuts() -> None:
    gray = np.zeros((60, 220), np.uint8)
    lefts, widths = segment.LAYOUTS[8]
    for left, width in zip(lefts, widths, strict=True):
        x = round(8 + 40 * left)
        cv2.rectangle(gray, (x + 3, 12), (x + round(40 * width) - 3, 50), 230, 3)
    seg = segment.segment(gray, 8)
    assert seg is not None
    assert len(seg.boxes) == 8
    xs = [x for x, _, _, _ in seg.boxes]
    assert xs == sorted(xs)


def test_a_plain_gray_cut_has_no_characters() -> None:
    assert segment.segment(np.full((56, 180), 120, np.uint8), 7) is None


def test_a_plate_length_other_than_seven_or_eight_is_refused() -> None:
    with pytest.raises(ValueError):
        segment.segment(np.zeros((56, 180), np.uint8), 6)


def test_most_real_plate_crops_cut_into_seven(shared_data: Path) -> None:
    crops = ccpd_crops(shared_data, 40)
    cut = 0
    for _, crop in crops:
        h = 64
        scaled = cv2.resize(crop, (round(crop.shape[1] * h / crop.shape[0]), h))
        seg = segment.segment(cv2.cvtColor(scaled, cv2.COLOR_BGR2GRAY), 7)
        cut += seg is not None and len(seg.boxes) == 7
    assert cut >= 0.9 * len(crops)
