"""Plate colour (车牌颜色) from a deskewed plate crop.

Each pixel of the plate's inner part votes for a background hue (blue, yellow, green) when it is
saturated, or counts as light or dark when it is not. The characters cover about a third of a plate,
so the background is the largest vote. Two-tone plates are told by where the votes fall: yellow-green
plates are yellow behind the first two characters and green after; gradient green plates are pale at
the top; blue-white plates are blue at the top and white at the bottom. Light characters on a darker
background are a blue or a black plate whatever the hue says (a colour cast moves the hue).
"""

from __future__ import annotations

import cv2
import numpy as np

from crosspark.identity import PlateColor

_DARK_TEXT = frozenset(
    {PlateColor.YELLOW, PlateColor.WHITE, PlateColor.GREEN, PlateColor.YELLOW_GREEN, PlateColor.BLUE_WHITE}
)

# OpenCV hue runs 0..180 (red at both ends); saturation and value 0..255. Over-exposed blue plates
# drift to cyan and dim ones to violet, so blue takes the wide band; yellow stops short of green.
_HUES = {"yellow": (8, 46), "green": (46, 84), "blue": (84, 165)}
#: Saturation above which a background counts as coloured. Blue plates in the shade are barely
#: saturated (25-45), and blue is by far the commonest plate, so it gets the lower bar.
_MIN_SATURATION = {"blue": 18, "yellow": 45, "green": 40}
_VOTE_SATURATION = 40
_LIGHT_VALUE = 110
#: The bright side of the background/characters split is the characters when it covers at most
#: this share of the plate (a plate's characters cover about a third of it).
_LIGHT_TEXT_SHARE = 0.45


def is_dark_text(color: PlateColor) -> bool:
    """Whether plates of ``color`` carry dark characters on a light background."""
    return color in _DARK_TEXT


def _hue_name(hue: float) -> str | None:
    for name, (lo, hi) in _HUES.items():
        if lo <= hue < hi:
            return name
    return None


def _share(hsv: np.ndarray, vote: str) -> float:
    """The share of the pixels of ``hsv`` (a region of the plate) that vote ``vote``: a coloured
    background hue (saturation and value at least ``_VOTE_SATURATION`` and 40), or ``light``
    (unsaturated and at least ``_LIGHT_VALUE`` bright); NaN for an empty region."""
    if hsv.size == 0:
        return float("nan")
    if vote == "light":
        inside = cv2.inRange(hsv, (0, 0, _LIGHT_VALUE), (255, _VOTE_SATURATION - 1, 255))
    else:
        lo, hi = _HUES[vote]
        inside = cv2.inRange(hsv, (lo, _VOTE_SATURATION, 40), (hi - 1, 255, 255))
    return cv2.countNonZero(inside) / (hsv.shape[0] * hsv.shape[1])


def _two_tone(hsv: np.ndarray) -> tuple[PlateColor, float] | None:
    """Yellow-green (yellow behind the first two characters) or blue-white (blue top, white bottom).
    Each vote is counted only in the part of the plate that the test looks at, and only while the
    tests before it pass."""
    ih, iw = hsv.shape[:2]
    left, right = slice(0, round(0.22 * iw)), slice(round(0.3 * iw), None)
    yellow_left = _share(hsv[:, left], "yellow")
    if yellow_left > 0.3:
        green_right = _share(hsv[:, right], "green")
        if green_right > 0.3 and _share(hsv[:, right], "yellow") < 0.15:
            return PlateColor.YELLOW_GREEN, float(min(1.0, (yellow_left + green_right) / 1.2))
    strip = max(1, round(0.15 * ih))
    blue_top = _share(hsv[:strip], "blue")
    if blue_top > 0.5:
        light_bottom = _share(hsv[-strip:], "light")
        if light_bottom > 0.7 and _share(hsv[-strip:], "blue") < 0.1:
            return PlateColor.BLUE_WHITE, float(min(1.0, (blue_top + light_bottom) / 1.4))
    return None


def _median_of(counts: np.ndarray) -> float:
    """The median (as ``np.median`` gives it) of values 0, 1, 2, … counted ``counts`` times."""
    ranks = counts.cumsum()
    n = int(ranks[-1])
    lower, upper = np.searchsorted(ranks, [(n - 1) // 2, n // 2], side="right")
    return (int(lower) + int(upper)) / 2


def _background_statistics(hsv: np.ndarray, background: np.ndarray) -> tuple[float, float, np.ndarray]:
    """The median saturation and value of the pixels of ``hsv`` where ``background`` (uint8) is
    set, and their saturation summed by hue (180 bins), from histograms: no copy of the pixels.
    Counts are exact in float32 and sums of integer saturations in float64, so this is what the
    pixels themselves give."""
    by_hue_sat = cv2.calcHist([hsv], [0, 1], background, [180, 256], [0, 180, 0, 256])
    values = cv2.calcHist([hsv], [2], background, [256], [0, 256]).ravel()
    saturation = by_hue_sat.astype(np.float64) @ np.arange(256, dtype=np.float64)
    return _median_of(by_hue_sat.sum(axis=0)), _median_of(values), saturation


def plate_color(plate_bgr: np.ndarray) -> tuple[PlateColor, float]:
    """The colour of a deskewed plate crop (BGR uint8) and a confidence in [0, 1]."""
    img = np.asarray(plate_bgr)
    if img.ndim != 3 or img.shape[2] != 3 or img.shape[0] < 4 or img.shape[1] < 8:
        raise ValueError(f"expected a BGR plate crop of at least 8 × 4 pixels, got shape {img.shape}")
    if img.dtype != np.uint8:
        img = np.clip(img, 0, 255).astype(np.uint8)
    h, w = img.shape[:2]
    inner = img[round(0.1 * h) : h - round(0.1 * h), round(0.04 * w) : w - round(0.04 * w)]
    hsv = cv2.cvtColor(inner, cv2.COLOR_BGR2HSV)
    two_tone = _two_tone(hsv)
    if two_tone is not None:
        return two_tone

    # The background is the larger side of an Otsu split of brightness; the characters the smaller.
    gray = cv2.cvtColor(inner, cv2.COLOR_BGR2GRAY)
    _, ink = cv2.threshold(gray, 0, 1, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    bright_share = cv2.countNonZero(ink) / ink.size
    background = ink if bright_share >= 0.5 else 1 - ink
    sat, val, saturation = _background_statistics(hsv, background)  # saturation by hue
    hist = saturation.reshape(30, 6).sum(axis=1)
    hist = hist + np.concatenate((hist[-1:], hist[:-1])) + np.concatenate((hist[1:], hist[:1]))  # a circle
    hue = float(hist.argmax() * 6 + 3)
    name = _hue_name(hue)
    agreeing = 0.0
    if name is not None:
        lo, hi = _HUES[name]
        agreeing = float(saturation[lo:hi].sum() / max(1.0, saturation.sum()))
    # a coloured background has one hue (most of its saturation falls in one band); the hue of a
    # dark or gray background is sensor noise, spread wide
    lit = val >= 25 or (val >= 12 and sat >= 60)  # a deep blue plate at night is dark but saturated
    if name is not None and sat >= _MIN_SATURATION[name] and lit and agreeing >= 0.6:
        confidence = agreeing * min(1.0, sat / (2 * _MIN_SATURATION[name]))
        color = {"blue": PlateColor.BLUE, "yellow": PlateColor.YELLOW, "green": PlateColor.GREEN}[name]
    else:
        color = PlateColor.WHITE if val >= _LIGHT_VALUE else PlateColor.BLACK
        confidence = min(1.0, abs(val - _LIGHT_VALUE) / 60.0) * (1.0 - min(1.0, sat / 40.0) * 0.5)
    if bright_share <= _LIGHT_TEXT_SHARE and is_dark_text(color):
        # light characters on a darker background: only blue and black plates look so. A colour
        # cast tints a blue background green or violet (on the dev photos: 2 of 154 located
        # plates, called green and white); a background with a blue plate's saturation is blue.
        # (Telling a dim blue background from a black one stays with the hue: a black plate's
        # background in coloured light is as saturated as a dim blue one.)
        blue = sat >= _MIN_SATURATION["blue"] and lit
        color, confidence = (PlateColor.BLUE if blue else PlateColor.BLACK), 0.5
    return color, float(confidence)
