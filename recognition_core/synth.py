"""Synthetic plates (合成车牌): rendered plates of every kind and colour with per-character boxes, and
generated gate photos with a plate on a car-like body. Used to train the character classifier and by
the demo; fonts come from the system (``recognition_core/train/fonts.sh`` installs them).

Geometry follows GA 36 in millimetres: a regular plate is 440 × 140 with seven 45 × 90 characters,
12 mm apart and 34 mm (with the separator dot) between the 2nd and 3rd; a new-energy plate is
480 × 140 with eight 43 × 90 characters. Everything is drawn at ``px_per_mm`` and returned in pixels.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from crosspark.identity import PlateColor
from crosspark.plate import (
    CROSS_BORDER_PREFIX,
    CROSS_BORDER_SUFFIXES,
    DIGITS,
    LETTERS,
    PROVINCES,
    is_valid,
    usual_colors,
)

FONT_DIRS = (Path("/usr/share/fonts"), Path("/usr/local/share/fonts"), Path.home() / ".fonts")
#: CJK font files (Heiti / sans first) and the face to use inside a collection (family name contains).
CJK_FONTS = {
    "NotoSansCJK-Bold.ttc": "SC",
    "NotoSansCJK-Regular.ttc": "SC",
    "wqy-zenhei.ttc": "Zen Hei",
    "wqy-microhei.ttc": "Micro Hei",
    "NotoSerifCJK-Bold.ttc": "SC",
}
LATIN_FONTS = {
    "DejaVuSansCondensed-Bold.ttf": "",
    "DejaVuSans-Bold.ttf": "",
    "DejaVuSansMono-Bold.ttf": "",
    "DejaVuSansCondensed.ttf": "",
    "NotoSansCJK-Bold.ttc": "SC",
    "wqy-microhei.ttc": "Micro Hei",
    # narrow faces, nearer the plate's condensed letters and digits than the faces above
    "LiberationSansNarrow-Bold.ttf": "",
    "RobotoCondensed-Bold.ttf": "",
}

# BGR colours of the plate background(s), the characters and the border.
_WHITE, _BLACK = (240, 240, 240), (20, 20, 20)
_BLUE, _YELLOW, _GREEN = (170, 70, 10), (20, 185, 235), (90, 185, 60)
_PALE_GREEN, _RED = (215, 245, 220), (30, 30, 200)

_GLYPH_PX = 128  # height at which glyphs are rasterised once, then scaled into their boxes


class FontMissingError(RuntimeError):
    """No usable font of a kind is installed."""


@dataclass(frozen=True, slots=True)
class RenderedPlate:
    """A rendered plate: BGR image, its text and colour, and one (x0, y0, x1, y1) box per character."""

    image: np.ndarray
    plate: str
    color: PlateColor
    boxes: np.ndarray


@dataclass(frozen=True, slots=True)
class GateScene:
    """A generated gate photo: BGR image, the plate and colour in it, and the plate's corners (4 × 2,
    clockwise from top-left, in image pixels)."""

    image: np.ndarray
    plate: str
    color: PlateColor
    corners: np.ndarray


def _find_font(name: str) -> Path | None:
    for root in FONT_DIRS:
        if root.is_dir():
            for path in root.rglob(name):
                return path
    return None


def _open_face(path: Path, family_hint: str, size: int) -> ImageFont.FreeTypeFont:
    for index in range(16 if path.suffix == ".ttc" else 1):
        try:
            face = ImageFont.truetype(str(path), size, index=index)
        except OSError:
            break
        if family_hint in " ".join(part or "" for part in face.getname()):
            return face
    return ImageFont.truetype(str(path), size)


@functools.cache
def available_fonts(kind: str) -> tuple[tuple[Path, str], ...]:
    """Installed fonts of ``kind`` ('cjk' or 'latin') as (path, face hint), best first."""
    table = CJK_FONTS if kind == "cjk" else LATIN_FONTS
    found = tuple((path, hint) for name, hint in table.items() if (path := _find_font(name)) is not None)
    if not found:
        raise FontMissingError(f"no {kind} font installed; run recognition_core/train/fonts.sh")
    return found


def _plate_one(size_px: int, flag: bool) -> np.ndarray:
    """A plate-style '1' (most fonts add a foot, and a flag plates mostly do not have): a plain
    bar, alone in its mask so that it is drawn centred in its slot, or with a short flag."""
    if not flag:
        return np.full((size_px, max(2, size_px // 8)), 255, np.uint8)
    h, w = size_px, size_px // 2
    mask = np.zeros((h, w), np.uint8)
    bar = max(2, w // 3)
    x1 = w - 2
    cv2.rectangle(mask, (x1 - bar, 0), (x1, h - 1), 255, -1)
    cv2.fillConvexPoly(mask, np.array([[x1 - bar, 0], [x1 - bar, bar], [1, bar + h // 6], [1, h // 6]]), 255)
    return mask


@functools.cache
def glyph_mask(ch: str, font_index: int = 0) -> np.ndarray:
    """The ink of ``ch`` in the given font (index into the fonts of its kind), cropped, uint8 0/255."""
    kind = "latin" if ch in LETTERS or ch in DIGITS else "cjk"
    fonts = available_fonts(kind)
    path, hint = fonts[font_index % len(fonts)]
    face = _open_face(path, hint, _GLYPH_PX)
    canvas = Image.new("L", (_GLYPH_PX * 2, _GLYPH_PX * 2), 0)
    ImageDraw.Draw(canvas).text((_GLYPH_PX // 2, _GLYPH_PX // 4), ch, fill=255, font=face)
    ink = np.asarray(canvas)
    rows, cols = np.flatnonzero(ink.max(axis=1) > 64), np.flatnonzero(ink.max(axis=0) > 64)
    if not rows.size:
        raise FontMissingError(f"font {path.name} has no glyph for {ch!r}")
    return np.ascontiguousarray(ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1])


def font_count(kind: str) -> int:
    return len(available_fonts(kind))


def char_layout(n: int) -> tuple[float, list[tuple[float, float]]]:
    """Plate width and each character's (left, right) in millimetres for a 7- or 8-character plate."""
    if n == 7:
        width, char_w, gap, dot_gap, left = 440.0, 45.0, 12.0, 34.0, 15.5
    elif n == 8:
        width, char_w, gap, dot_gap, left = 480.0, 43.0, 9.0, 49.0, 15.5
    else:
        raise ValueError(f"a plate has 7 or 8 characters, not {n}")
    spans, x = [], left
    for i in range(n):
        spans.append((x, x + char_w))
        x += char_w + (dot_gap if i == 1 else gap)
    return width, spans


_CHAR_TOP, _CHAR_H, _PLATE_H = 25.0, 90.0, 140.0


def _background(color: PlateColor, w: int, h: int, split_x: int) -> np.ndarray:
    img = np.empty((h, w, 3), np.float32)
    ramp = np.linspace(0.0, 1.0, h, dtype=np.float32)[:, None, None]
    if color is PlateColor.GREEN:  # pale at the top, green at the bottom
        img[:] = np.array(_PALE_GREEN, np.float32) * (1 - ramp) + np.array(_GREEN, np.float32) * ramp
    elif color is PlateColor.BLUE_WHITE:  # blue at the top fading to white
        img[:] = np.array(_BLUE, np.float32) * (1 - ramp) + np.array(_WHITE, np.float32) * ramp
    elif color is PlateColor.YELLOW_GREEN:  # yellow behind the province and authority, green after
        img[:] = _GREEN
        img[:, :split_x] = _YELLOW
    else:
        bg = {PlateColor.BLUE: _BLUE, PlateColor.YELLOW: _YELLOW, PlateColor.BLACK: _BLACK, PlateColor.WHITE: _WHITE}
        img[:] = bg[color]
    return img


def text_color(color: PlateColor) -> tuple[int, int, int]:
    """BGR colour of the characters on a plate of ``color``."""
    return _WHITE if color in (PlateColor.BLUE, PlateColor.BLACK) else _BLACK


def render_plate(
    plate: str,
    color: PlateColor,
    *,
    px_per_mm: float = 0.5,
    rng: np.random.Generator | None = None,
    fonts: tuple[int, int] | None = None,
    stroke: int = 0,
) -> RenderedPlate:
    """Draw ``plate`` (7 or 8 characters) on a plate of ``color``. ``fonts`` picks the (cjk, latin)
    font indices (random when None and ``rng`` is given); ``stroke`` > 0 thickens and < 0 thins the
    characters by that many pixels at glyph resolution; ``px_per_mm`` 0.5 gives a 220 × 70 plate."""
    rng = rng if rng is not None else np.random.default_rng(0)
    if fonts is None:
        fonts = (int(rng.integers(font_count("cjk"))), int(rng.integers(font_count("latin"))))
    width_mm, spans = char_layout(len(plate))
    w, h = round(width_mm * px_per_mm), round(_PLATE_H * px_per_mm)
    split_x = round((spans[1][1] + spans[2][0]) / 2 * px_per_mm)
    img = _background(color, w, h, split_x)
    ink_color = np.array(text_color(color), np.float32)

    inset = max(1, round(4 * px_per_mm))
    border = max(1, round(2 * px_per_mm))
    frame = np.zeros((h, w), np.uint8)
    cv2.rectangle(frame, (inset, inset), (w - 1 - inset, h - 1 - inset), 255, border, cv2.LINE_AA)
    img += (frame[..., None] / 255.0) * (ink_color - img)

    boxes = np.zeros((len(plate), 4), np.int32)
    top, bottom = _CHAR_TOP * px_per_mm, (_CHAR_TOP + _CHAR_H) * px_per_mm
    kernel = np.ones((3, 3), np.uint8)
    for i, (ch, (left_mm, right_mm)) in enumerate(zip(plate, spans, strict=True)):
        is_latin = ch in LETTERS or ch in DIGITS
        if ch == "1" and (draw := rng.random()) < 0.7:  # as on plates: mostly a plain bar
            mask = _plate_one(_GLYPH_PX, flag=draw >= 0.5)
        else:
            mask = glyph_mask(ch, fonts[1] if is_latin else fonts[0])
        if stroke > 0:
            mask = cv2.dilate(mask, kernel, iterations=stroke)
        elif stroke < 0:
            mask = cv2.erode(mask, kernel, iterations=-stroke)
        box_w, box_h = (right_mm - left_mm) * px_per_mm, bottom - top
        gw = box_w
        if is_latin:  # keep narrow glyphs (1, J) narrow; squeeze wide ones into the box
            gw = min(box_w, mask.shape[1] * box_h / mask.shape[0])
        x0 = left_mm * px_per_mm + (box_w - gw) / 2
        gx0, gy0, gx1, gy1 = int(np.floor(x0)), int(np.floor(top)), int(np.ceil(x0 + gw)), int(np.ceil(bottom))
        gx1, gy1 = min(gx1, w), min(gy1, h)
        scaled = cv2.resize(mask, (gx1 - gx0, gy1 - gy0), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
        ink = np.array(_RED, np.float32) if ch == "警" else ink_color
        region = img[gy0:gy1, gx0:gx1]
        region += scaled[..., None] * (ink - region)
        boxes[i] = (gx0, gy0, gx1, gy1)

    dot_x = (spans[1][1] + spans[2][0]) / 2 * px_per_mm
    dot = np.zeros((h, w), np.uint8)
    cv2.circle(dot, (round(dot_x), round(h / 2)), max(1, round(5 * px_per_mm)), 255, -1, cv2.LINE_AA)
    img += (dot[..., None] / 255.0) * (ink_color - img)
    if rng.random() < 0.5:  # the two rivets above the 2nd and 6th characters
        rivets = np.zeros((h, w), np.uint8)
        for k in (1, len(plate) - 2):
            cx = round((spans[k][0] + spans[k][1]) / 2 * px_per_mm)
            cv2.circle(rivets, (cx, round(13 * px_per_mm)), max(1, round(4 * px_per_mm)), 255, -1, cv2.LINE_AA)
        img += (rivets[..., None] / 255.0) * (np.array((160, 160, 160), np.float32) - img)
    return RenderedPlate(np.clip(img, 0, 255).astype(np.uint8), plate, color, boxes)


def random_plate(rng: np.random.Generator, color: PlateColor | None = None) -> tuple[str, PlateColor]:
    """A random valid plate and a colour it usually carries (``color`` forces the colour)."""
    colors = list(PlateColor)
    if color is None:
        color = colors[int(rng.integers(len(colors)))]
    alnum = LETTERS + DIGITS

    def pick(chars: str, k: int = 1) -> str:
        return "".join(chars[int(i)] for i in rng.integers(len(chars), size=k))

    head = pick(PROVINCES) + pick(LETTERS)
    if color is PlateColor.GREEN:
        return head + pick("DF") + pick(alnum) + pick(DIGITS, 4), color
    if color is PlateColor.YELLOW_GREEN:
        return head + pick(DIGITS, 5) + pick("DF"), color
    suffixes = {PlateColor.WHITE: "警", PlateColor.BLACK: "港澳领使", PlateColor.YELLOW: "学挂"}
    if color in suffixes and rng.random() < 0.3:
        suffix = pick(suffixes[color])
        if suffix in CROSS_BORDER_SUFFIXES:
            head = CROSS_BORDER_PREFIX
        plate = head + pick(alnum, 4) + suffix
    else:
        plate = head + pick(alnum, 5)
    assert is_valid(plate) and color in usual_colors(plate)
    return plate, color


def _car_scene(rng: np.random.Generator, size: tuple[int, int]) -> tuple[np.ndarray, tuple[int, int, int]]:
    """A background (ground, wall, lane marks) with a car-like front; returns it and the bumper's
    centre and width, where the plate goes."""
    w, h = size
    img = np.empty((h, w, 3), np.float32)
    sky = rng.uniform(90, 200, 3)
    ground = rng.uniform(50, 120) * np.ones(3)
    ramp = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    img[:] = sky * (1 - ramp) + ground * ramp
    for _ in range(int(rng.integers(3, 9))):
        x, y = int(rng.integers(w)), int(rng.integers(h // 2, h))
        cv2.line(
            img,
            (x, y),
            (x + int(rng.integers(-w // 4, w // 4)), h),
            tuple(float(v) for v in rng.uniform(150, 230, 3)),
            3,
        )
    car_w = int(w * rng.uniform(0.45, 0.7))
    cx, bottom = w // 2 + int(rng.integers(-w // 8, w // 8 + 1)), int(h * rng.uniform(0.85, 0.97))
    top = max(h // 20, bottom - int(car_w * rng.uniform(0.7, 0.9)))
    body = tuple(float(v) for v in rng.uniform(20, 230, 3))
    x0, x1 = cx - car_w // 2, cx + car_w // 2
    cv2.rectangle(img, (x0, top + (bottom - top) // 3), (x1, bottom), body, -1)
    windshield = np.array(
        [
            [x0 + car_w // 8, top + (bottom - top) // 3],
            [x0 + car_w // 4, top],
            [x1 - car_w // 4, top],
            [x1 - car_w // 8, top + (bottom - top) // 3],
        ],
        np.int32,
    )
    cv2.fillConvexPoly(img, windshield, tuple(float(v) for v in rng.uniform(20, 70, 3)))
    lamp_y = top + (bottom - top) // 2
    for lx in (x0 + car_w // 8, x1 - car_w // 8):
        cv2.ellipse(img, (lx, lamp_y), (car_w // 12, car_w // 30), 0, 0, 360, (235, 235, 235), -1)
    grille_y = lamp_y + (bottom - top) // 10
    cv2.rectangle(img, (cx - car_w // 5, lamp_y - car_w // 40), (cx + car_w // 5, grille_y), (40, 40, 40), -1)
    bumper_y = bottom - (bottom - top) // 5
    return img, (cx, bumper_y, car_w)


def composite_scene(
    plate: RenderedPlate,
    rng: np.random.Generator,
    *,
    size: tuple[int, int] = (1280, 720),
    tilt_deg: float = 8.0,
) -> GateScene:
    """Put ``plate`` on the bumper of a generated car in a ``size`` (width, height) gate photo, with
    a perspective tilt up to ``tilt_deg``, uneven lighting, blur and sensor noise."""
    img, (cx, cy, car_w) = _car_scene(rng, size)
    ph, pw = plate.image.shape[:2]
    target_w = car_w * rng.uniform(0.28, 0.38)
    scale = target_w / pw
    src = np.array([[0, 0], [pw, 0], [pw, ph], [0, ph]], np.float32)
    corners = (src - [pw / 2, ph / 2]) * scale
    angle = np.deg2rad(rng.uniform(-tilt_deg, tilt_deg))
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]], np.float32)
    corners = corners @ rot.T
    corners += rng.normal(0, 0.03 * target_w * tilt_deg / 8.0, corners.shape).astype(np.float32)
    corners += np.array([cx, cy], np.float32)
    matrix = cv2.getPerspectiveTransform(src, corners.astype(np.float32))
    warped = cv2.warpPerspective(plate.image.astype(np.float32), matrix, size, flags=cv2.INTER_AREA)
    mask = cv2.warpPerspective(np.ones((ph, pw), np.float32), matrix, size, flags=cv2.INTER_LINEAR)[..., None]
    img = img * (1 - mask) + warped * mask

    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    gx, gy = rng.uniform(-1, 1, 2)
    light = rng.uniform(0.7, 1.2) + 0.25 * (gx * (xx / w - 0.5) + gy * (yy / h - 0.5))
    img = img * light[..., None]
    sigma = rng.uniform(0.0, 1.2)
    if sigma > 0.3:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    img += rng.normal(0, rng.uniform(1, 6), img.shape).astype(np.float32)
    return GateScene(np.clip(img, 0, 255).astype(np.uint8), plate.plate, plate.color, corners)


def render_gate_photos(
    n: int, seed: int = 0, *, size: tuple[int, int] = (1280, 720), colors: Sequence[PlateColor] | None = None
) -> list[GateScene]:
    """``n`` generated gate photos with random valid plates, reproducible from ``seed``."""
    rng = np.random.default_rng(seed)
    scenes = []
    for i in range(n):
        color = colors[i % len(colors)] if colors else None
        text, plate_color = random_plate(rng, color)
        rendered = render_plate(text, plate_color, px_per_mm=1.0, rng=rng)
        scenes.append(composite_scene(rendered, rng, size=size))
    return scenes
