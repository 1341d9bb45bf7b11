"""Plate colour (车牌颜色) from a deskewed plate crop.

Each pixel of the plate's inner part votes for a background hue (blue, yellow, green) when it is
saturated, or counts as light or dark when it is not. The characters cover about a third of a plate,
so the background is the largest vote. Two-tone plates are told by where the votes fall: yellow-green
plates are yellow behind the first two characters and green after; gradient green plates are pale at
the top; blue-white plates are blue at the top and white at the bottom.
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


def is_dark_text(color: PlateColor) -> bool:
    """Whether plates of ``color`` carry dark characters on a light background."""
    return color in _DARK_TEXT


def _hue_name(hue: float) -> str | None:
    for name, (lo, hi) in _HUES.items():
        if lo <= hue < hi:
            return name
    return None


def _votes(hsv: np.ndarray) -> dict[str, np.ndarray]:
    h, s, v = hsv[..., 0], hsv[..., 1], hsv[..., 2]
    chroma = (s >= _VOTE_SATURATION) & (v >= 40)
    votes = {name: chroma & (h >= lo) & (h < hi) for name, (lo, hi) in _HUES.items()}
    votes["light"] = ~chroma & (v >= _LIGHT_VALUE)
    return votes


def _two_tone(votes: dict[str, np.ndarray]) -> tuple[PlateColor, float] | None:
    """Yellow-green (yellow behind the first two characters) or blue-white (blue top, white bottom)."""
    ih, iw = votes["blue"].shape
    left, right = slice(0, round(0.22 * iw)), slice(round(0.3 * iw), None)
    yellow_left, green_right = votes["yellow"][:, left].mean(), votes["green"][:, right].mean()
    if yellow_left > 0.3 and green_right > 0.3 and votes["yellow"][:, right].mean() < 0.15:
        return PlateColor.YELLOW_GREEN, float(min(1.0, (yellow_left + green_right) / 1.2))
    strip = max(1, round(0.15 * ih))
    blue_top, light_bottom = votes["blue"][:strip].mean(), votes["light"][-strip:].mean()
    if blue_top > 0.5 and light_bottom > 0.7 and votes["blue"][-strip:].mean() < 0.1:
        return PlateColor.BLUE_WHITE, float(min(1.0, (blue_top + light_bottom) / 1.4))
    return None


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
    two_tone = _two_tone(_votes(hsv))
    if two_tone is not None:
        return two_tone

    # The background is the larger side of an Otsu split of brightness; the characters the smaller.
    gray = cv2.cvtColor(inner, cv2.COLOR_BGR2GRAY)
    _, ink = cv2.threshold(gray, 0, 1, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    bright = ink.astype(bool)
    background = bright if bright.mean() >= 0.5 else np.logical_not(bright)
    bg = hsv[background]
    sat, val = float(np.median(bg[:, 1])), float(np.median(bg[:, 2]))
    hist = np.bincount(bg[:, 0] // 6, weights=bg[:, 1].astype(np.float64), minlength=30)
    hist = hist + np.roll(hist, 1) + np.roll(hist, -1)
    hue = float(hist.argmax() * 6 + 3)
    name = _hue_name(hue)
    agreeing = 0.0
    if name is not None:
        lo, hi = _HUES[name]
        in_band = (bg[:, 0] >= lo) & (bg[:, 0] < hi)
        agreeing = float(bg[in_band, 1].sum(dtype=np.float64) / max(1.0, bg[:, 1].sum(dtype=np.float64)))
    # a coloured background has one hue (most of its saturation falls in one band); the hue of a
    # dark or gray background is sensor noise, spread wide
    lit = val >= 25 or (val >= 12 and sat >= 60)  # a deep blue plate at night is dark but saturated
    if name is not None and sat >= _MIN_SATURATION[name] and lit and agreeing >= 0.6:
        confidence = agreeing * min(1.0, sat / (2 * _MIN_SATURATION[name]))
        color = {"blue": PlateColor.BLUE, "yellow": PlateColor.YELLOW, "green": PlateColor.GREEN}[name]
        return color, float(confidence)
    color = PlateColor.WHITE if val >= _LIGHT_VALUE else PlateColor.BLACK
    confidence = min(1.0, abs(val - _LIGHT_VALUE) / 60.0) * (1.0 - min(1.0, sat / 40.0) * 0.5)
    return color, float(confidence)
