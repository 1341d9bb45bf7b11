"""Training glyphs: synthetic plates rendered, degraded like camera crops and cut into characters, plus
augmented cuts of the CCPD dev crops. Every glyph goes through ``classify.prepare_glyph``."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

import cv2
import numpy as np

from crosspark.identity import PlateColor
from crosspark.plate import ALPHABET, DIGITS, LETTERS, PROVINCES, SPECIAL_SUFFIXES
from recognition_core.classify import prepare_glyph
from recognition_core.color import is_dark_text
from recognition_core.synth import font_count, render_plate
from recognition_core.train.ccpd import Crop, char_boxes, level

CLASS_OF = {ch: i for i, ch in enumerate(ALPHABET)}
#: How often each colour is drawn: the road is mostly blue and yellow.
COLOR_WEIGHTS = {
    PlateColor.BLUE: 0.35,
    PlateColor.YELLOW: 0.2,
    PlateColor.GREEN: 0.12,
    PlateColor.YELLOW_GREEN: 0.08,
    PlateColor.WHITE: 0.1,
    PlateColor.BLACK: 0.08,
    PlateColor.BLUE_WHITE: 0.07,
}


def training_text(rng: np.random.Generator, n: int) -> str:
    """A plate-like string with every class well represented (not necessarily valid: the grammar is
    the decoder's job, the classifier must see every character in every slot it can stand in)."""
    alnum = LETTERS + DIGITS
    chars = [PROVINCES[rng.integers(len(PROVINCES))], LETTERS[rng.integers(len(LETTERS))]]
    chars += [alnum[i] for i in rng.integers(len(alnum), size=n - 3)]
    last = SPECIAL_SUFFIXES if rng.random() < 0.3 else alnum
    chars.append(last[rng.integers(len(last))])
    return "".join(chars)


def to_text_bright_gray(bgr: np.ndarray, color: PlateColor) -> np.ndarray:
    """Gray with bright characters: inverted for plates with dark characters."""
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    return 255 - gray if is_dark_text(color) else gray


def _degrade(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Lighting, blur, sensor noise and JPEG, as a camera does (float32 BGR in, uint8 out)."""
    h, w = img.shape[:2]
    gain = rng.uniform(0.45, 1.3)
    gx, gy = rng.uniform(-0.4, 0.4, 2)
    ramp = 1.0 + gx * np.linspace(-0.5, 0.5, w, dtype=np.float32)[None, :] + gy * np.linspace(-0.5, 0.5, h)[:, None]
    img = img * (gain * ramp[..., None]) + rng.uniform(-30, 30) + rng.uniform(-15, 15, 3)
    img = 255.0 * (np.clip(img, 0, 255) / 255.0) ** rng.uniform(0.6, 1.6)
    sigma = rng.uniform(0.0, 1.1)
    if sigma > 0.25:
        img = cv2.GaussianBlur(img, (0, 0), sigma)
    if rng.random() < 0.15:  # motion blur along a random direction
        k = int(rng.integers(3, 6))
        kernel = np.zeros((k, k), np.float32)
        kernel[k // 2, :] = 1.0
        rot = cv2.getRotationMatrix2D(((k - 1) / 2, (k - 1) / 2), rng.uniform(0, 180), 1.0)
        streak = cv2.warpAffine(kernel, rot, (k, k))
        streak = (streak / max(float(streak.sum()), 1e-6)).astype(np.float32)
        img = cv2.filter2D(img, -1, streak)
    img = img + rng.normal(0, rng.uniform(0, 10), img.shape)
    out = np.clip(img, 0, 255).astype(np.uint8)
    if rng.random() < 0.7:
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(25, 95))])
        if ok:
            out = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return out


def _jitter_box(box: Sequence[float], rng: np.random.Generator, w: int, h: int) -> tuple[int, int, int, int] | None:
    """A segmenter's imperfect cut: each edge moved in or out by a fraction of the box (out by up to
    40 % of the width at the sides, which takes in pieces of the neighbours)."""
    x0, y0, x1, y1 = box
    bw, bh = x1 - x0, y1 - y0
    x0 -= bw * rng.uniform(-0.1, 0.4)
    x1 += bw * rng.uniform(-0.1, 0.4)
    y0 -= bh * rng.uniform(-0.06, 0.15)
    y1 += bh * rng.uniform(-0.06, 0.15)
    x0, y0 = max(0, round(x0)), max(0, round(y0))
    x1, y1 = min(w, round(x1)), min(h, round(y1))
    if x1 - x0 < 2 or y1 - y0 < 4:
        return None
    return x0, y0, x1, y1


def synthetic_plate_glyphs(rng: np.random.Generator) -> Iterator[tuple[np.ndarray, int]]:
    """Glyphs and class indices of one rendered, warped and degraded synthetic plate."""
    colors = list(COLOR_WEIGHTS)
    color = colors[rng.choice(len(colors), p=np.array(list(COLOR_WEIGHTS.values())) / sum(COLOR_WEIGHTS.values()))]
    n = 8 if color in (PlateColor.GREEN, PlateColor.YELLOW_GREEN) or rng.random() < 0.05 else 7
    text = training_text(rng, n)
    fonts = (int(rng.integers(font_count("cjk"))), int(rng.integers(font_count("latin"))))
    plate = render_plate(
        text, color, px_per_mm=float(rng.uniform(0.14, 0.5)), rng=rng, fonts=fonts, stroke=int(rng.integers(-3, 6))
    )
    ph, pw = plate.image.shape[:2]

    # Surround the plate with a random car body, then tilt, shear and squeeze it.
    margin = int(0.15 * ph) + 2
    canvas = np.empty((ph + 2 * margin, pw + 2 * margin, 3), np.float32)
    canvas[:] = rng.uniform(0, 255, 3)
    canvas[margin : margin + ph, margin : margin + pw] = plate.image
    ch, cw = canvas.shape[:2]
    src = np.array([[0, 0], [cw, 0], [cw, ch], [0, ch]], np.float32)
    dst = src + rng.normal(0, 0.025, (4, 2)).astype(np.float32) * [cw, ch]
    angle, shear = rng.uniform(-4, 4), rng.uniform(-0.12, 0.12)
    affine = cv2.getRotationMatrix2D((cw / 2, ch / 2), angle, 1.0)
    affine[0, 1] += shear
    dst = dst @ affine[:, :2].T + affine[:, 2]
    dst[:, 0] *= rng.uniform(0.85, 1.1)
    dst -= dst.min(axis=0)
    out_w, out_h = int(np.ceil(dst[:, 0].max())) + 1, int(np.ceil(dst[:, 1].max())) + 1
    matrix = cv2.getPerspectiveTransform(src, dst.astype(np.float32))
    warped = cv2.warpPerspective(
        canvas, matrix, (out_w, out_h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE
    )
    gray = to_text_bright_gray(_degrade(warped, rng), color)

    for (x0, y0, x1, y1), ch_ in zip(plate.boxes, text, strict=True):
        corners = np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], np.float32) + margin
        moved = cv2.perspectiveTransform(corners[None], matrix)[0]
        box = _jitter_box((*moved.min(axis=0), *moved.max(axis=0)), rng, out_w, out_h)
        if box is not None:
            bx0, by0, bx1, by1 = box
            yield prepare_glyph(gray[by0:by1, bx0:bx1]), CLASS_OF[ch_]


def real_crop_glyphs(
    crop: Crop,
    rng: np.random.Generator,
    copies: int,
    keep: Sequence[bool] | None = None,
    province_copies: int | None = None,
) -> Iterator[tuple[np.ndarray, int]]:
    """``copies`` augmented cuts of each character of a CCPD crop (blue plates: bright text), of
    the slots ``keep`` marks (all by default); the province character only in the first
    ``province_copies`` (CCPD's crops are nearly all 皖: as many copies of it as of the other
    characters would teach the classifier that most provinces are 皖)."""
    bgr = level(crop.bgr)
    boxes = char_boxes(cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY))
    for k in range(copies):
        img = bgr if k == 0 else _degrade(bgr.astype(np.float32), rng)
        gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
        h, w = gray.shape
        for slot, (box, ch) in enumerate(zip(boxes, crop.plate, strict=True)):
            if keep is not None and not keep[slot]:
                continue
            if slot == 0 and province_copies is not None and k >= province_copies:
                continue
            cut = box if k == 0 else _jitter_box(box, rng, w, h)
            if cut is not None:
                x0, y0, x1, y1 = cut
                yield prepare_glyph(gray[y0:y1, x0:x1]), CLASS_OF[ch]


def crop_glyphs(crop: Crop) -> tuple[np.ndarray, str]:
    """The 7 glyphs of a CCPD crop, levelled and cut by the fitted layout, without augmentation."""
    gray = cv2.cvtColor(level(crop.bgr), cv2.COLOR_BGR2GRAY)
    glyphs = np.stack([prepare_glyph(gray[y0:y1, x0:x1]) for x0, y0, x1, y1 in char_boxes(gray)])
    return glyphs, crop.plate
