import cv2
import numpy as np
import pytest

from crosspark.identity import PlateColor
from crosspark.plate import is_valid, usual_colors
from recognition_core.color import plate_color
from recognition_core.synth import (
    FontMissingError,
    char_layout,
    font_count,
    random_plate,
    render_gate_photos,
    render_plate,
)

try:
    render_plate("京A12345", PlateColor.BLUE)
except FontMissingError as exc:  # pragma: no cover - depends on the machine
    pytest.skip(f"plate fonts not installed ({exc}); run recognition_core/train/fonts.sh", allow_module_level=True)


@pytest.mark.parametrize("color", list(PlateColor))
def test_random_plate_is_valid_and_usual_for_its_colour(color):
    rng = np.random.default_rng(3)
    for _ in range(50):
        plate, got = random_plate(rng, color)
        assert is_valid(plate) and got is color and color in usual_colors(plate)


@pytest.mark.parametrize("plate", ["京A12345", "粤BD12345"])
def test_rendered_plate_has_the_standard_aspect_ratio(plate):
    width_mm, _ = char_layout(len(plate))
    image = render_plate(plate, PlateColor.BLUE, px_per_mm=0.5).image
    assert image.shape == (70, round(width_mm * 0.5), 3)


def test_rendered_boxes_are_inside_the_plate_left_to_right_and_disjoint():
    rendered = render_plate("皖A1B2C3D", PlateColor.GREEN, px_per_mm=0.5)
    h, w = rendered.image.shape[:2]
    boxes = rendered.boxes
    assert len(boxes) == 8
    assert (boxes[:, 0] >= 0).all() and (boxes[:, 2] <= w).all() and (boxes[:, 3] <= h).all()
    assert (boxes[1:, 0] >= boxes[:-1, 2]).all()


def test_each_box_holds_ink_of_the_text_colour():
    rendered = render_plate("京A12345", PlateColor.BLUE, px_per_mm=0.5)
    for x0, y0, x1, y1 in rendered.boxes:
        cut = rendered.image[y0:y1, x0:x1].astype(int)
        assert (cut.min(axis=2) > 180).any()  # white strokes on the blue background


def test_the_separator_dot_lies_between_the_second_and_third_boxes():
    rendered = render_plate("京A12345", PlateColor.BLUE, px_per_mm=0.5)
    h = rendered.image.shape[0]
    gap = rendered.image[h // 2, rendered.boxes[1, 2] : rendered.boxes[2, 0]].astype(int)
    assert (gap.min(axis=1) > 180).any()


def test_rendering_is_reproducible_from_the_seed():
    a = render_plate("沪C21F13", PlateColor.YELLOW, rng=np.random.default_rng(5)).image
    b = render_plate("沪C21F13", PlateColor.YELLOW, rng=np.random.default_rng(5)).image
    assert np.array_equal(a, b)


def test_gate_photos_hold_the_plate_inside_the_frame():
    scenes = render_gate_photos(3, seed=1, size=(640, 480))
    for scene in scenes:
        assert scene.image.shape == (480, 640, 3)
        assert is_valid(scene.plate)
        assert (scene.corners >= 0).all() and (scene.corners[:, 0] < 640).all() and (scene.corners[:, 1] < 480).all()


def test_char_layout_refuses_other_lengths():
    with pytest.raises(ValueError):
        char_layout(6)


@pytest.mark.parametrize("color", list(PlateColor))
def test_gate_photo_plates_keep_their_colour_under_the_scene_lighting(color):
    right = 0
    for seed in range(6):
        scene = render_gate_photos(1, seed=seed, size=(480, 360), colors=[color])[0]
        width = 440 if len(scene.plate) == 7 else 480
        target = np.array([[0, 0], [width, 0], [width, 140], [0, 140]], np.float32)
        matrix = cv2.getPerspectiveTransform(scene.corners.astype(np.float32), target)
        right += plate_color(cv2.warpPerspective(scene.image, matrix, (width, 140)))[0] is color
    assert right >= 5


def test_a_plain_one_is_drawn_as_a_bar_centred_in_its_slot() -> None:
    # seeds whose first draw for the '1' picks the plain bar: its ink is one narrow column block
    # in the middle of its box
    for seed in range(20):
        rng = np.random.default_rng(seed)
        draw = np.random.default_rng(seed)
        draw.integers(font_count("cjk")), draw.integers(font_count("latin"))
        if draw.random() >= 0.5:
            continue
        plate = render_plate("京A11111", PlateColor.BLUE, px_per_mm=1.0, rng=rng)
        x0, _, x1, _ = plate.boxes[2]
        slot_left, slot_right = char_layout(7)[1][2]
        assert x1 - x0 <= 0.4 * (slot_right - slot_left)
        assert abs((x0 + x1) / 2 - (slot_left + slot_right) / 2) <= 2
        return
    pytest.fail("no seed drew a plain bar")
