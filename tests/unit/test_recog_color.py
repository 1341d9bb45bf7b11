import cv2
import numpy as np
import pytest

from crosspark.identity import PlateColor
from recognition_core import color
from recognition_core.color import is_dark_text, plate_color
from recognition_core.synth import FontMissingError, random_plate, render_plate

try:
    render_plate("京A12345", PlateColor.BLUE)
except FontMissingError as exc:  # pragma: no cover - depends on the machine
    pytest.skip(f"plate fonts not installed ({exc}); run recognition_core/train/fonts.sh", allow_module_level=True)


def rendered(color: PlateColor, seed: int, px_per_mm: float = 0.4) -> np.ndarray:
    rng = np.random.default_rng(seed)
    text, _ = random_plate(rng, color)
    return render_plate(text, color, px_per_mm=px_per_mm, rng=rng).image


@pytest.mark.parametrize("color", list(PlateColor))
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_plate_color_of_a_rendered_plate_is_its_colour(color, seed):
    got, confidence = plate_color(rendered(color, seed))
    assert got is color
    assert 0.0 <= confidence <= 1.0


@pytest.mark.parametrize("color", list(PlateColor))
def test_plate_color_holds_on_a_small_plate(color):
    assert plate_color(rendered(color, 7, px_per_mm=0.2))[0] is color


@pytest.mark.parametrize("color", list(PlateColor))
@pytest.mark.parametrize("gain", [0.6, 1.2])
def test_plate_color_holds_under_dimmer_or_brighter_light(color, gain):
    image = np.clip(rendered(color, 11).astype(np.float32) * gain, 0, 255).astype(np.uint8)
    assert plate_color(image)[0] is color


def test_plate_color_reads_a_dim_desaturated_blue_plate_as_blue():
    image = np.full((40, 130, 3), (95, 75, 60), np.uint8)  # BGR: a blue plate in the shade
    image[10:30, 10:120:12] = 200
    assert plate_color(image)[0] is PlateColor.BLUE


GREEN_CAST = np.array([0.3, 1.0, 0.45])  # BGR gains: a blue background turns green (hue 65)


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_plate_color_calls_light_characters_on_a_cast_background_blue(seed):
    image = np.clip(rendered(PlateColor.BLUE, seed) * GREEN_CAST, 0, 255).astype(np.uint8)
    assert plate_color(image)[0] is PlateColor.BLUE


@pytest.mark.parametrize("color", [PlateColor.YELLOW, PlateColor.WHITE, PlateColor.GREEN])
def test_a_cast_leaves_dark_characters_on_a_light_plate_dark(color):
    image = np.clip(rendered(color, 4) * GREEN_CAST, 0, 255).astype(np.uint8)
    assert is_dark_text(plate_color(image)[0])


def test_plate_color_rejects_a_gray_image():
    with pytest.raises(ValueError):
        plate_color(np.zeros((30, 100), np.uint8))


@pytest.mark.parametrize(
    ("color", "dark"),
    [
        (PlateColor.BLUE, False),
        (PlateColor.BLACK, False),
        (PlateColor.YELLOW, True),
        (PlateColor.WHITE, True),
        (PlateColor.GREEN, True),
        (PlateColor.YELLOW_GREEN, True),
        (PlateColor.BLUE_WHITE, True),
    ],
)
def test_is_dark_text_follows_the_plate_colours(color, dark):
    assert is_dark_text(color) is dark


@pytest.mark.parametrize("seed", range(6))
def test_median_of_counts_is_numpys_median_of_the_values(seed):
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 256, rng.integers(1, 400)).astype(np.uint8)
    assert color._median_of(np.bincount(values, minlength=256)) == float(np.median(values))


@pytest.mark.parametrize("seed", range(6))
def test_background_statistics_from_histograms_equal_those_of_the_pixels(seed):
    rng = np.random.default_rng(seed)
    hsv = cv2.cvtColor(
        rng.integers(0, 256, (rng.integers(3, 60), rng.integers(6, 200), 3), dtype=np.uint8), cv2.COLOR_BGR2HSV
    )
    background = (rng.random(hsv.shape[:2]) < 0.6).astype(np.uint8)
    background.flat[0] = 1
    bg = hsv[background.astype(bool)]
    sat, val, by_hue = color._background_statistics(hsv, background)
    assert sat == float(np.median(bg[:, 1])) and val == float(np.median(bg[:, 2]))
    np.testing.assert_array_equal(by_hue, np.bincount(bg[:, 0], weights=bg[:, 1].astype(np.float64), minlength=180))


@pytest.mark.parametrize("vote", ["blue", "yellow", "green", "light"])
def test_a_vote_share_counts_the_pixels_of_that_vote(vote):
    hsv = cv2.cvtColor(np.random.default_rng(3).integers(0, 256, (30, 90, 3), dtype=np.uint8), cv2.COLOR_BGR2HSV)
    h, s, v = (hsv[..., k].astype(int) for k in range(3))
    chroma = (s >= 40) & (v >= 40)
    if vote == "light":
        expected = ~chroma & (v >= 110)
    else:
        lo, hi = {"blue": (84, 165), "yellow": (8, 46), "green": (46, 84)}[vote]
        expected = chroma & (h >= lo) & (h < hi)
    assert color._share(hsv, vote) == expected.mean()
