"""Plate localisation: the Cython kernels against their NumPy twins, refusals, and drawn plates found."""

from __future__ import annotations

import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest

from crosspark.identity import PlateColor
from recognition_core import _locate_cy, _reference, _segment_cy, locate

# GA 36 layout in millimetres: character left edges of a regular plate (45 mm wide, 90 mm tall).
CHAR_LEFTS_MM = (0, 57, 136, 193, 250, 307, 364)
PLATE_MM = (440, 140)
BLUE_BGR, WHITE_BGR = (160, 60, 10), (235, 235, 235)


def draw_plate(px_per_mm: float = 0.5, text: str = "A12345", bars: int = 3) -> tuple[np.ndarray, list[tuple]]:
    """A blue plate with white characters drawn without any font file: the province character as
    ``bars`` separate vertical strokes (like 川, in pieces), then ``text`` in OpenCV's Hershey font,
    and the separator dot. Returns the BGR plate and the character boxes (x0, y0, x1, y1)."""
    w, h = round(PLATE_MM[0] * px_per_mm), round(PLATE_MM[1] * px_per_mm)
    plate = np.zeros((h, w, 3), np.uint8)
    plate[:] = BLUE_BGR
    inset = max(1, round(4 * px_per_mm))
    cv2.rectangle(plate, (inset, inset), (w - 1 - inset, h - 1 - inset), WHITE_BGR, max(1, round(2 * px_per_mm)))
    x_origin, top, char_w, char_h = 15.5 * px_per_mm, 25 * px_per_mm, 45 * px_per_mm, 90 * px_per_mm
    boxes = []
    stroke = max(1, round(10 * px_per_mm))
    for i, left in enumerate(CHAR_LEFTS_MM):
        x0 = x_origin + left * px_per_mm
        box = (round(x0), round(top), round(x0 + char_w), round(top + char_h))
        boxes.append(box)
        if i == 0:
            for k in range(bars):
                bx = round(x0 + (k + 0.5) * char_w / bars - stroke / 2)
                y_top = round(top + (0.15 if k != 1 else 0.0) * char_h)
                cv2.rectangle(plate, (bx, y_top), (bx + stroke - 1, round(top + char_h) - 1), WHITE_BGR, -1)
            continue
        ch = text[i - 1]
        font = cv2.FONT_HERSHEY_SIMPLEX
        (tw, th), _ = cv2.getTextSize(ch, font, 1.0, 2)
        scale = char_h / th
        thick = max(1, round(stroke * 0.9))
        (tw, th), _ = cv2.getTextSize(ch, font, scale, thick)
        org = (round(x0 + (char_w - tw) / 2), round(top + char_h))
        cv2.putText(plate, ch, org, font, scale, WHITE_BGR, thick, cv2.LINE_AA)
    dot_x = round(x_origin + (CHAR_LEFTS_MM[1] + 45 + CHAR_LEFTS_MM[2]) / 2 * px_per_mm)
    cv2.circle(plate, (dot_x, round(h / 2)), max(1, round(5 * px_per_mm)), WHITE_BGR, -1)
    return plate, boxes


def scene_with_plate(
    size: tuple[int, int] = (960, 720),
    centre: tuple[int, int] = (480, 450),
    px_per_mm: float = 0.4,
    angle: float = 0.0,
    seed: int = 0,
) -> tuple[np.ndarray, tuple[float, float, float, float]]:
    """A gray, noisy, car-like scene with a drawn plate at ``centre`` turned by ``angle`` degrees;
    returns the photo and the plate's bounding box (x, y, w, h)."""
    rng = np.random.default_rng(seed)
    w, h = size
    img = np.full((h, w, 3), 90, np.uint8)
    cv2.rectangle(img, (w // 6, h // 4), (5 * w // 6, 7 * h // 8), (70, 70, 80), -1)  # the car body
    cv2.rectangle(img, (w // 4, h // 3), (3 * w // 4, h // 2), (40, 40, 40), -1)  # the grille
    plate, _ = draw_plate(px_per_mm)
    ph, pw = plate.shape[:2]
    m = cv2.getRotationMatrix2D((pw / 2, ph / 2), -angle, 1.0)
    m[:, 2] += [centre[0] - pw / 2, centre[1] - ph / 2]
    warped = cv2.warpAffine(plate, m, (w, h), flags=cv2.INTER_LINEAR)
    mask = cv2.warpAffine(np.full((ph, pw), 255, np.uint8), m, (w, h))
    img[mask > 127] = warped[mask > 127]
    noise = rng.integers(-6, 7, img.shape, dtype=np.int16)
    img = np.clip(img + noise, 0, 255).astype(np.uint8)
    corners = cv2.transform(np.array([[[0, 0], [pw, 0], [pw, ph], [0, ph]]], np.float64), m)[0]
    x0, y0 = corners.min(axis=0)
    x1, y1 = corners.max(axis=0)
    return img, (float(x0), float(y0), float(x1 - x0), float(y1 - y0))


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    return iw * ih / (aw * ah + bw * bh - iw * ih)


def dev_photo(shared_data: Path, index: int = 0) -> np.ndarray:
    folder = shared_data / "alpr" / "easypr-dev"
    if not (folder / "labels.json").is_file():
        pytest.skip(f"no dev photos at {folder}")
    entry = json.loads((folder / "labels.json").read_text(encoding="utf-8"))[index]
    image = cv2.imread(str(folder / entry["file"]))
    assert image is not None
    return image


# --- kernels against their references -------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1, 1, 3), (2, 5, 3), (3, 3, 3), (37, 53, 3), (120, 161, 3)])
def test_cue_maps_match_reference_on_random_pixels(shape: tuple[int, int, int]) -> None:
    img = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    got = locate.cue_maps(img)
    want = _reference.cue_maps(img, locate._COLOUR_PARAMS)
    for g, w in zip(got, want, strict=True):
        np.testing.assert_array_equal(g, w)


def test_cue_maps_match_reference_on_a_dev_photo(shared_data: Path) -> None:
    small = np.ascontiguousarray(locate.shrink(dev_photo(shared_data), 320))
    for g, w in zip(locate.cue_maps(small), _reference.cue_maps(small, locate._COLOUR_PARAMS), strict=True):
        np.testing.assert_array_equal(g, w)


def test_colour_flags_mark_a_plate_blue_and_its_characters_white() -> None:
    plate, _ = draw_plate(0.5)
    colour, _, _ = locate.cue_maps(plate)
    h, w = colour.shape
    assert colour[h // 2, 3 * w // 4 - 2] & locate.FLAG_BLUE or colour[h // 2 + 1, 3 * w // 4 - 2] & locate.FLAG_BLUE
    assert (colour & locate.FLAG_BLUE).astype(bool).mean() > 0.4
    assert (colour & locate.FLAG_WHITE).astype(bool).mean() > 0.1


@pytest.mark.parametrize("density", [0.0, 0.2, 0.5, 0.8, 1.0])
@pytest.mark.parametrize("shape", [(1, 1), (1, 40), (40, 1), (31, 47), (64, 64)])
def test_label_regions_match_reference_on_random_masks(shape: tuple[int, int], density: float) -> None:
    mask = (np.random.default_rng(shape[0] * 7 + shape[1]).random(shape) < density).astype(np.uint8)
    labels = np.empty(shape, np.int32)
    stats = _locate_cy.label_regions(mask, labels)
    ref_labels, ref_stats = _reference.label_regions(mask)
    np.testing.assert_array_equal(labels, ref_labels)
    np.testing.assert_allclose(stats, ref_stats)
    np.testing.assert_allclose(_locate_cy.label_regions(mask), ref_stats)


def test_label_regions_join_diagonal_neighbours_and_number_in_raster_order() -> None:
    mask = np.array([[0, 0, 1, 0], [0, 1, 0, 0], [0, 0, 0, 1], [1, 0, 0, 1]], np.uint8)
    labels = np.empty(mask.shape, np.int32)
    stats = _locate_cy.label_regions(mask, labels)
    assert len(stats) == 3
    assert labels[0, 2] == labels[1, 1] == 1  # the diagonal pair is one region, seen first
    assert labels[2, 3] == labels[3, 3] == 2
    assert labels[3, 0] == 3
    assert stats[0, _locate_cy.STAT_AREA] == 2


def test_label_regions_match_reference_on_a_dev_photo_edge_mask(shared_data: Path) -> None:
    small = np.ascontiguousarray(locate.shrink(dev_photo(shared_data, 3), 200))
    _, edge, _ = locate.cue_maps(small)
    mask = (edge > 30).astype(np.uint8)
    labels = np.empty(mask.shape, np.int32)
    stats = _locate_cy.label_regions(mask, labels)
    ref_labels, ref_stats = _reference.label_regions(mask)
    np.testing.assert_array_equal(labels, ref_labels)
    np.testing.assert_allclose(stats, ref_stats)


def test_region_moments_give_a_rotated_rectangle() -> None:
    mask = np.zeros((200, 300), np.uint8)
    box = cv2.boxPoints(((150, 100), (160, 40), 20.0)).astype(np.int32)
    cv2.fillPoly(mask, [box], 1)
    rect = locate._rectangles(locate.region_stats(mask))[0]
    cx, cy, length, height, angle, fill = rect
    assert abs(cx - 150) < 1 and abs(cy - 100) < 1
    assert abs(length - 160) < 4 and abs(height - 40) < 3
    assert abs(angle - 20) < 1
    assert fill > 0.95


@pytest.mark.parametrize("bridge", [9, 17])
def test_bars_of_the_edge_strengths_over_a_threshold_are_the_bars_of_the_thresholded_edges(bridge: int) -> None:
    """One closing and opening of the grey edge map serves every threshold (both are local
    extremes, which commute with a threshold): the same regions as closing each mask."""
    rng = np.random.default_rng(bridge)
    edge = cv2.GaussianBlur(rng.integers(0, 80, (120, 200), dtype=np.uint8), (3, 3), 0)
    bars = locate._bars(edge, bridge)
    for t in (8, 14, 23, 40):
        mask = cv2.threshold(edge, t, 255, cv2.THRESH_BINARY)[1]
        expected = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (bridge, 3)))
        expected = cv2.morphologyEx(expected, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, (5, 3)))
        np.testing.assert_array_equal(cv2.threshold(bars, t, 255, cv2.THRESH_BINARY)[1], expected)
        np.testing.assert_array_equal(locate._edge_regions(bars, t)[0], locate.region_stats(expected))


def test_suppression_stops_at_its_limit_with_the_same_first_picks() -> None:
    rng = np.random.default_rng(2)
    rects = np.column_stack(
        [rng.uniform(0, 300, 40), rng.uniform(0, 200, 40), rng.uniform(30, 90, 40), rng.uniform(8, 30, 40),
         rng.uniform(-20, 20, 40)]
    )  # fmt: skip
    order = np.argsort(rng.random(40))
    everything = locate._suppress(rects, order)
    assert len(everything) > 5
    assert locate._suppress(rects, order, limit=5) == everything[:5]


def test_line_texture_matches_reference_on_random_rectangles() -> None:
    rng = np.random.default_rng(5)
    luma = rng.integers(0, 256, (90, 140), dtype=np.uint8)
    rects = np.column_stack(
        [
            rng.uniform(-5, 145, 40),
            rng.uniform(-5, 95, 40),
            rng.uniform(0, 120, 40),
            rng.uniform(1, 30, 40),
            rng.uniform(-90, 90, 40),
        ]
    )
    np.testing.assert_array_equal(
        _locate_cy.line_texture(luma, rects, 5, 8.0, 0.15), _reference.line_texture(luma, rects, 5, 8.0, 0.15)
    )


def test_line_texture_counts_the_strokes_of_a_drawn_plate() -> None:
    plate, _ = draw_plate(0.5)
    luma = cv2.cvtColor(plate, cv2.COLOR_BGR2GRAY)
    h, w = luma.shape
    rect = np.array([[w / 2, h / 2, w * 0.95, h * 0.8, 0.0]])
    counts = _locate_cy.line_texture(np.ascontiguousarray(luma), rect, 5, 8.0, 0.15)[0]
    assert counts[2] >= 14  # seven characters, two edges each at least


def test_shear_scores_match_reference() -> None:
    ink = (np.random.default_rng(9).random((30, 70)) < 0.3).astype(np.uint8)
    np.testing.assert_allclose(_locate_cy.shear_scores(ink, locate.SHEARS), _reference.shear_scores(ink, locate.SHEARS))


def test_estimate_shear_finds_the_lean_of_slanted_strokes() -> None:
    ink = np.zeros((40, 120), np.uint8)
    for x in range(10, 110, 14):
        cv2.line(ink, (x, 0), (x + 8, 39), 1, 2)  # strokes leaning right by 8 px over 40 rows
    shear = locate.estimate_shear(ink)
    assert shear == pytest.approx(-0.2, abs=0.04)
    upright = locate.apply_shear(ink * 255, shear)
    assert locate.estimate_shear((upright > 127).astype(np.uint8)) == 0.0


# --- refusals ------------------------------------------------------------------------------------


def test_check_image_refuses_an_image_wider_than_8000_pixels() -> None:
    wide = np.zeros((20, locate.MAX_SIDE + 1, 3), np.uint8)
    with pytest.raises(locate.ImageRefused, match="larger than 8000"):
        locate.locate(wide)


@pytest.mark.parametrize(
    "array",
    [
        np.zeros((0, 0, 3), np.uint8),
        np.zeros((40, 40, 3), np.float32),
        np.zeros((40, 40, 2), np.uint8),
        np.zeros((8, 8, 3), np.uint8),
    ],
    ids=["empty", "float", "two-channel", "tiny"],
)
def test_check_image_refuses_arrays_that_are_not_photos(array: np.ndarray) -> None:
    with pytest.raises(locate.ImageRefused):
        locate.check_image(array)


def test_gray_photo_is_accepted_as_bgr() -> None:
    assert locate.check_image(np.zeros((30, 40), np.uint8)).shape == (30, 40, 3)


# --- drawn plates --------------------------------------------------------------------------------


def test_a_drawn_plate_is_located() -> None:
    img, truth = scene_with_plate()
    cands = locate.locate(img)
    assert cands, "no candidate at all"
    assert max(iou(truth, c.box) for c in cands) >= 0.5
    assert cands[0].color is PlateColor.BLUE


def test_a_tilted_plate_is_located_with_its_angle() -> None:
    img, truth = scene_with_plate(angle=12.0, seed=1)
    best = max(locate.locate(img), key=lambda c: iou(truth, c.box))
    assert iou(truth, best.box) >= 0.5
    assert best.angle == pytest.approx(12.0, abs=3.0)


def test_a_plate_in_a_large_photo_is_located_in_its_pixels() -> None:
    img, truth = scene_with_plate(size=(2400, 1800), centre=(1600, 1300), px_per_mm=0.8, seed=2)
    assert max(iou(truth, c.box) for c in locate.locate(img)) >= 0.5


def test_two_plates_in_one_photo_are_both_located() -> None:
    img, first = scene_with_plate(size=(1200, 600), centre=(300, 400), seed=3)
    plate, _ = draw_plate(0.4)
    ph, pw = plate.shape[:2]
    img[150 : 150 + ph, 800 : 800 + pw] = plate
    second = (800.0, 150.0, float(pw), float(ph))
    cands = locate.locate(img)
    assert max(iou(first, c.box) for c in cands) >= 0.5
    assert max(iou(second, c.box) for c in cands) >= 0.5


def test_a_blank_photo_has_no_candidate() -> None:
    assert locate.locate(np.full((480, 640, 3), 128, np.uint8)) == []


def test_plate_crop_turns_the_plate_upright() -> None:
    img, truth = scene_with_plate(angle=-15.0, seed=4)
    best = max(locate.locate(img), key=lambda c: iou(truth, c.box))
    crop = locate.plate_crop(img, best)
    assert crop.shape[0] == locate.CROP_HEIGHT
    # upright: the middle row crosses every character, and so do rows a little above and below
    gray = np.ascontiguousarray(cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY))
    _, strokes_per_row = _segment_cy.binarize_local(gray, 14, 14, 0.06, 4)
    mid = crop.shape[0] // 2
    assert min(strokes_per_row[mid - 4 : mid + 5]) >= 7
    assert math.isfinite(best.score)
