"""Training plates for the sequence reader (no PyTorch here): rendered plates of every colour, cut
the way the pipeline cuts candidates (tilted, sheared, in perspective, with uneven margins) and
degraded like a gate camera (low resolution, blur, noise, JPEG); augmented copies of the CCPD
training crops; and plate-free cuts (car bodies, grilles, lamps, walls) whose text is empty, so
that the reader learns to read nothing where there is no plate. ``make_set`` renders in parallel
processes, each from its own seed, so a set is reproducible whatever the number of processes.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor

import cv2
import numpy as np

from crosspark.identity import PlateColor
from crosspark.plate import DIGITS, PROVINCES, is_valid
from recognition_core.reader import prepare_plate
from recognition_core.synth import font_count, glyph_mask, random_plate, render_plate
from recognition_core.train.ccpd import char_boxes, level
from recognition_core.train.data import COLOR_WEIGHTS, _degrade, training_text

#: Share of plate-free cuts in a synthetic set.
NEGATIVE_SHARE = 0.08
#: Share of synthetic plates given a run of one repeated digit (``_with_run``).
RUN_SHARE = 0.15
#: Plates rendered per task handed to a worker process.
CHUNK = 500


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """What surrounds a plate in a cut: a flat or graded car body with noise and a few edges."""
    bg = np.empty((h, w, 3), np.float32)
    top, bottom = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    if rng.random() < 0.5:
        bottom = top
    ramp = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
    bg[:] = top * (1 - ramp) + bottom * ramp
    bg += rng.normal(0, rng.uniform(2, 25), (h, w, 3)).astype(np.float32)
    for _ in range(int(rng.integers(0, 4))):  # edges of lamps, bumpers, frames
        y = int(rng.integers(h))
        color = tuple(float(v) for v in rng.uniform(0, 255, 3))
        cv2.line(bg, (0, y), (w, y + int(rng.integers(-5, 6))), color, int(rng.integers(1, 4)))
    return bg


def _clutter(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """A plate-free cut: grille bars, lamp blobs, badges, stripes of a wall or a road sign."""
    img = _background(rng, h, w)
    kind = int(rng.integers(4))
    if kind == 0:  # grille: regular vertical or slanted bars
        step = int(rng.integers(3, 12))
        slant = int(rng.integers(-6, 7))
        color = tuple(float(v) for v in rng.uniform(0, 255, 3))
        for x in range(int(rng.integers(0, step)), w, step):
            cv2.line(img, (x, 0), (x + slant, h), color, int(rng.integers(1, max(2, step // 2))))
    elif kind == 1:  # blobs: lamps, logos
        for _ in range(int(rng.integers(1, 5))):
            centre = (int(rng.integers(w)), int(rng.integers(h)))
            axes = (int(rng.integers(3, max(4, w // 3))), int(rng.integers(2, max(3, h // 2))))
            color = tuple(float(v) for v in rng.uniform(0, 255, 3))
            cv2.ellipse(img, centre, axes, float(rng.uniform(0, 180)), 0, 360, color, -1)
    elif kind == 2:  # horizontal stripes: bumpers, wall courses, shadows
        y = 0
        while y < h:
            t = int(rng.integers(2, max(3, h // 3)))
            img[y : y + t] = rng.uniform(0, 255, 3)
            y += t + int(rng.integers(1, max(2, h // 4)))
    else:  # rectangles: badges, stickers, bricks
        for _ in range(int(rng.integers(2, 9))):
            x0, y0 = int(rng.integers(w)), int(rng.integers(h))
            x1, y1 = x0 + int(rng.integers(2, max(3, w // 4))), y0 + int(rng.integers(2, max(3, h // 2)))
            cv2.rectangle(img, (x0, y0), (x1, y1), tuple(float(v) for v in rng.uniform(0, 255, 3)), -1)
    return img


def _low_resolution(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Down to a small plate (as a distant or cheap camera sees it) and back up."""
    h, w = img.shape[:2]
    f = rng.uniform(0.35, 0.8)
    small = cv2.resize(img, (max(8, round(w * f)), max(4, round(h * f))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def _with_run(text: str, rng: np.random.Generator) -> str:
    """``text`` with two to five neighbouring serial characters made one digit (粤B99999, 黑AB4444):
    frequent on real plates, where the reader must see the gap between equal characters, and rare
    in random text. Unchanged where the run would make a valid plate invalid."""
    n = int(rng.integers(2, 6))
    start = int(rng.integers(2, len(text) - n + 1))
    digit = DIGITS[int(rng.integers(len(DIGITS)))]
    out = text[:start] + digit * n + text[start + n :]
    return out if is_valid(out) or not is_valid(text) else text


def _plate_text(rng: np.random.Generator) -> tuple[str, PlateColor]:
    colors = list(COLOR_WEIGHTS)
    weights = np.array(list(COLOR_WEIGHTS.values()))
    color = colors[rng.choice(len(colors), p=weights / weights.sum())]
    if rng.random() < 0.6:
        text, color = random_plate(rng, color)
    else:  # every character in every slot it may stand in, valid or not
        text = training_text(rng, 8 if color in (PlateColor.GREEN, PlateColor.YELLOW_GREEN) else 7)
    if rng.random() < RUN_SHARE:
        text = _with_run(text, rng)
    return text, color


def synthetic_plate(rng: np.random.Generator, shape: tuple[int, int]) -> tuple[np.ndarray, str]:
    """One rendered plate, tilted, sheared and in perspective, cut with uneven margins, degraded;
    gray and ``shape`` (height, width) sized, with its text."""
    text, color = _plate_text(rng)
    fonts = (int(rng.integers(font_count("cjk"))), int(rng.integers(font_count("latin"))))
    plate = render_plate(
        text, color, px_per_mm=float(rng.uniform(0.2, 0.55)), rng=rng, fonts=fonts, stroke=int(rng.integers(-3, 7))
    )
    ph, pw = plate.image.shape[:2]
    # output cut: the plate plus margins in [-5 %, +22 %] of its width on each side and [-8 %,
    # +30 %] of its height (a located candidate is rarely exact, and the pipeline reads each
    # candidate at several margins: ``pipeline.SEQUENCE_LOOKS``)
    ml, mr = rng.uniform(-0.05, 0.22, 2) * pw
    mt, mb = rng.uniform(-0.08, 0.30, 2) * ph
    out_w, out_h = round(pw + ml + mr), round(ph + mt + mb)
    src = np.array([[0, 0], [pw, 0], [pw, ph], [0, ph]], np.float32)
    dst = src + np.array([ml, mt], np.float32)
    dst += rng.normal(0, 0.02, (4, 2)).astype(np.float32) * [pw, ph]
    angle, shear = rng.uniform(-7, 7), rng.uniform(-0.25, 0.25)
    affine = cv2.getRotationMatrix2D((out_w / 2, out_h / 2), angle, 1.0)
    affine[0, 1] += shear
    affine[0, 2] -= shear * out_h / 2
    dst = (dst @ affine[:, :2].T + affine[:, 2]).astype(np.float32)
    matrix = cv2.getPerspectiveTransform(src, dst)
    img = cv2.warpPerspective(plate.image.astype(np.float32), matrix, (out_w, out_h), flags=cv2.INTER_LINEAR)
    mask = cv2.warpPerspective(np.ones((ph, pw), np.float32), matrix, (out_w, out_h), flags=cv2.INTER_LINEAR)
    img = img * mask[..., None] + _background(rng, out_h, out_w) * (1 - mask[..., None])
    if rng.random() < 0.3:
        img = _low_resolution(img, rng)
    return prepare_plate(_degrade(img, rng), shape), text


def negative_cut(rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """A plate-free cut, gray and ``shape`` sized (its text is empty)."""
    h = int(rng.integers(16, 60))
    w = int(h * rng.uniform(2.0, 5.0))
    return prepare_plate(_degrade(_clutter(rng, h, w), rng), shape)


def repaint_province(bgr: np.ndarray, plate: str, rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """A CCPD crop with its province character painted over by another province's, drawn in the
    crop's own background and stroke colours and blurred to its sharpness. CCPD's crops are nearly
    all 皖: as they are, they teach the reader that a plate begins with 皖; repainted, they teach
    it real plates' other characters without that bias."""
    img = level(bgr)
    gray = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    x0, y0, x1, y1 = (int(v) for v in char_boxes(gray)[0])
    if x1 - x0 < 4 or y1 - y0 < 8:
        return img, plate
    _, ink = cv2.threshold(gray, 0, 1, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    strokes: np.ndarray = ink.astype(bool)
    stroke, ground = np.median(img[strokes], axis=0), np.median(img[~strokes], axis=0)
    province = PROVINCES[int(rng.integers(len(PROVINCES)))]
    mask = glyph_mask(province, int(rng.integers(font_count("cjk"))))
    scaled = cv2.resize(mask, (x1 - x0, y1 - y0), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    alpha = cv2.GaussianBlur(scaled, (0, 0), rng.uniform(0.3, 0.8))[..., None]
    out = img.astype(np.float32)
    # the old character gone, with some room around it: the fitted box is often a little off
    pad = max(1, (x1 - x0) // 8)
    out[max(0, y0 - pad) : y1 + pad, max(0, x0 - 4 * pad) : x1 + pad] = ground
    out[y0:y1, x0:x1] = ground * (1 - alpha) + stroke * alpha
    noise = rng.normal(0, 3, out.shape).astype(np.float32)
    return np.clip(out + noise, 0, 255).astype(np.uint8), province + plate[1:]


def real_plate(bgr: np.ndarray, rng: np.random.Generator, shape: tuple[int, int]) -> np.ndarray:
    """An augmented copy of a CCPD crop: small rotation, scale and shift, then camera degradation."""
    h, w = bgr.shape[:2]
    m = np.asarray(cv2.getRotationMatrix2D((w / 2, h / 2), rng.uniform(-5, 5), rng.uniform(0.9, 1.08)), np.float64)
    m[:, 2] += rng.uniform(-0.04, 0.04, 2) * np.array([w, h], np.float64)
    img = cv2.warpAffine(bgr.astype(np.float32), m, (w, h), borderMode=cv2.BORDER_REPLICATE)
    return prepare_plate(_degrade(img, rng), shape)


def _chunk(args: tuple[int, int, tuple[int, int], float]) -> tuple[np.ndarray, list[str]]:
    seed, n, shape, negative_share = args
    rng = np.random.default_rng(seed)
    imgs, texts = [], []
    for _ in range(n):
        if rng.random() < negative_share:
            imgs.append(negative_cut(rng, shape))
            texts.append("")
        else:
            img, text = synthetic_plate(rng, shape)
            imgs.append(img)
            texts.append(text)
    return np.stack(imgs), texts


def make_set(
    n: int, seed: int, shape: tuple[int, int], negative_share: float = NEGATIVE_SHARE, workers: int | None = None
) -> tuple[np.ndarray, list[str]]:
    """``n`` synthetic cuts (uint8, (n, *shape)) and their texts ('' for a plate-free cut),
    rendered in ``workers`` processes (all CPUs by default); the same for any ``workers``."""
    tasks = [
        (seed * 100_003 + i, min(CHUNK, n - start), shape, negative_share) for i, start in enumerate(range(0, n, CHUNK))
    ]
    workers = workers or os.cpu_count() or 1
    if workers == 1 or len(tasks) == 1:
        parts = [_chunk(t) for t in tasks]
    else:
        with ProcessPoolExecutor(workers) as pool:
            parts = list(pool.map(_chunk, tasks))
    imgs = np.concatenate([p[0] for p in parts]) if parts else np.zeros((0, *shape), np.uint8)
    texts = [t for p in parts for t in p[1]]
    return imgs, texts


def real_set(
    crops: Sequence[np.ndarray],
    plates: Sequence[str],
    copies: int,
    seed: int,
    shape: tuple[int, int],
    repaint: float = 0.0,
) -> tuple[np.ndarray, list[str]]:
    """Each crop once as it is, then ``copies - 1`` augmented copies (crop-major within a copy), a
    ``repaint`` share of them with another province (``repaint_province``); with their texts."""
    rng = np.random.default_rng(seed)
    imgs = [prepare_plate(c, shape) for c in crops]
    texts = list(plates)
    for _ in range(copies - 1):
        for crop, plate in zip(crops, plates, strict=True):
            if rng.random() < repaint:
                crop, plate = repaint_province(crop, plate, rng)
            imgs.append(real_plate(crop, rng, shape))
            texts.append(plate)
    return (np.stack(imgs) if imgs else np.zeros((0, *shape), np.uint8)), texts
