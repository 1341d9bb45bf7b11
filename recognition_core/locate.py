"""Plate localisation (车牌定位): colour and edge cues → candidate regions → verification → upright cut.

The photo is scaled down to about ``LOCATE_WIDTH`` pixels wide (``shrink``); one Cython pass
(``_locate_cy.cue_maps``) gives every pixel its plate-colour flags, its vertical-edge strength and
its luma. Two kinds of candidate come out of those maps:

* colour: pixels of one plate background colour (blue, yellow, green) near character strokes,
  closed over the strokes and labelled into regions;
* edges: dense vertical edges (a row of characters), at the photo's own edge threshold and at half
  of it (dim plates), closed horizontally into bars and labelled; this finds white and black
  plates, and coloured plates whose colour runs into the car body.

Each region's moments give a rotated rectangle (centre, long and short side, angle). Rectangles
with a plate's proportions are scored on character texture, the bright/dark crossings along lines
through their middle (``_locate_cy.line_texture``); the best are cut upright out of the
full-resolution photo (``plate_crop``), where segmentation levels and shears them
(``estimate_shear``). The recogniser has the last word: a candidate is a plate when its characters
read as a valid plate.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np

from crosspark.identity import PlateColor
from recognition_core import _locate_cy

#: Largest width or height accepted; anything larger is refused (``ImageRefused``).
MAX_SIDE = 8000
#: Smallest width or height accepted.
MIN_SIDE = 16
#: Width at which the cue maps are computed.
LOCATE_WIDTH = 800
#: A plate is 440 × 140 mm.
PLATE_ASPECT = 440 / 140
#: Size of an upright plate cut: the plate rectangle plus a margin, scaled to this height.
CROP_HEIGHT = 56
#: Margins added around a candidate's rectangle before cutting, as fractions of its sides.
CROP_MARGIN_X = 0.12
CROP_MARGIN_Y = 0.18

# Colour ranges: hue on OpenCV's 0..180 scale; saturation and value on 0..255.
_COLOUR_PARAMS = np.array(
    [
        96, 130,  # blue hue
        11, 34,  # yellow hue
        35, 88,  # green hue
        45,  # chroma: saturation at least
        35,  # chroma: value at least
        45,  # white: saturation at most
        140,  # white: value at least
        60,  # dark: value at most
    ],
    dtype=np.int32,
)  # fmt: skip
# Colour flags of the cue map: one bit per plate background colour, plus the two neutrals.
FLAG_BLUE, FLAG_YELLOW, FLAG_GREEN, FLAG_WHITE, FLAG_DARK = 1, 2, 4, 8, 16
_FLAG_OF = {PlateColor.BLUE: FLAG_BLUE, PlateColor.YELLOW: FLAG_YELLOW, PlateColor.GREEN: FLAG_GREEN}


class ImageRefused(ValueError):
    """An image the recogniser will not look at: undecodable, empty, or larger than ``MAX_SIDE``."""


@dataclass(frozen=True, slots=True)
class Candidate:
    """A region that may be a plate: a rotated rectangle in the pixels of the photo passed to
    ``locate``. ``angle`` (degrees) turns the x axis onto the long side; ``color`` is the colour
    cue that found it (None for an edge-only find)."""

    cx: float
    cy: float
    length: float
    height: float
    angle: float
    color: PlateColor | None
    score: float

    @property
    def corners(self) -> np.ndarray:
        """The four corners (top-left, top-right, bottom-right, bottom-left), float32 (4, 2)."""
        c, s = math.cos(math.radians(self.angle)), math.sin(math.radians(self.angle))
        hx, hy = self.length / 2, self.height / 2
        local = np.array([[-hx, -hy], [hx, -hy], [hx, hy], [-hx, hy]])
        rot = np.array([[c, -s], [s, c]])
        return (local @ rot.T + [self.cx, self.cy]).astype(np.float32)

    @property
    def box(self) -> tuple[int, int, int, int]:
        """Axis-aligned bounding box ``(x, y, w, h)`` of the rectangle."""
        pts = self.corners
        x0, y0 = np.floor(pts.min(axis=0))
        x1, y1 = np.ceil(pts.max(axis=0))
        return int(x0), int(y0), int(x1 - x0), int(y1 - y0)


def check_image(image: np.ndarray) -> np.ndarray:
    """Return ``image`` as a contiguous 3-channel uint8 BGR array, or raise ``ImageRefused``."""
    if not isinstance(image, np.ndarray) or image.size == 0:
        raise ImageRefused("empty image")
    if image.ndim == 2:
        image = cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    elif image.ndim == 3 and image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ImageRefused(f"expected a BGR image, got an array of shape {image.shape}")
    if image.dtype != np.uint8:
        raise ImageRefused(f"expected 8-bit pixels, got {image.dtype}")
    h, w = image.shape[:2]
    if h > MAX_SIDE or w > MAX_SIDE:
        raise ImageRefused(f"image of {w}×{h} pixels is larger than {MAX_SIDE}×{MAX_SIDE}")
    if h < MIN_SIDE or w < MIN_SIDE:
        raise ImageRefused(f"image of {w}×{h} pixels is smaller than {MIN_SIDE}×{MIN_SIDE}")
    return np.ascontiguousarray(image)


def colour_flags(b: np.ndarray, g: np.ndarray, r: np.ndarray, params: np.ndarray) -> np.ndarray:
    """Colour flags of int32 channel arrays. ``params``: blue hue lo/hi, yellow hue lo/hi, green
    hue lo/hi, chroma s min, chroma v min, white s max, white v min, dark v max (hue on OpenCV's
    0..180 scale, s and v on 0..255).

    Division free: with d = max − min, hue × d is an integer (``hd``), so lo ≤ hue ≤ hi becomes
    lo·d ≤ hd ≤ hi·d, and s ≥ s_min becomes 255·d ≥ s_min·max."""
    p = [int(v) for v in params]
    mx = np.maximum(np.maximum(b, g), r)
    mn = np.minimum(np.minimum(b, g), r)
    d = mx - mn
    flags = np.zeros(mx.shape, dtype=np.uint8)
    flags[mx <= p[10]] |= FLAG_DARK
    flags[(255 * d <= p[8] * mx) & (mx >= p[9])] |= FLAG_WHITE
    chroma = (d > 0) & (255 * d >= p[6] * mx) & (mx >= p[7])
    hd_r = 30 * (g - b)
    hd_r = np.where(hd_r < 0, hd_r + 180 * d, hd_r)
    hd = np.where(mx == r, hd_r, np.where(mx == g, 60 * d + 30 * (b - r), 120 * d + 30 * (r - g)))

    def in_range(lo: int, hi: int) -> np.ndarray:
        return chroma & (hd >= lo * d) & (hd <= hi * d)

    blue = in_range(p[0], p[1])
    yellow = ~blue & in_range(p[2], p[3])
    green = ~blue & ~yellow & in_range(p[4], p[5])
    flags[blue] |= FLAG_BLUE
    flags[yellow] |= FLAG_YELLOW
    flags[green] |= FLAG_GREEN
    return flags


def colour_table(params: np.ndarray) -> np.ndarray:
    """The flags of every 15-bit colour (5 bits per channel, index b<<10 | g<<5 | r) at the centre
    of its cell: the look-up table of ``_locate_cy.cue_maps``."""
    idx = np.arange(32768, dtype=np.int32)
    b, g, r = ((idx >> 10) & 31) * 8 + 4, ((idx >> 5) & 31) * 8 + 4, (idx & 31) * 8 + 4
    return colour_flags(b, g, r, params)


@functools.cache
def _colour_table() -> np.ndarray:
    return colour_table(_COLOUR_PARAMS)


def cue_maps(image: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-pixel colour flags, vertical-edge strength and luma of a BGR image (see ``_locate_cy``)."""
    image = np.ascontiguousarray(image)
    colour = np.empty(image.shape[:2], np.uint8)
    edge = np.empty(image.shape[:2], np.uint8)
    luma = np.empty(image.shape[:2], np.uint8)
    _locate_cy.cue_maps(image, _colour_table(), colour, edge, luma)
    return colour, edge, luma


def region_stats(mask: np.ndarray) -> np.ndarray:
    """Statistics of the 8-connected regions of ``mask != 0`` (see ``_locate_cy.label_regions``)."""
    return _locate_cy.label_regions(np.ascontiguousarray(mask, dtype=np.uint8))


def label_regions(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Labels (1..n, 0 for background) and statistics of the 8-connected regions of ``mask != 0``."""
    labels = np.empty(mask.shape, np.int32)
    return labels, _locate_cy.label_regions(np.ascontiguousarray(mask, dtype=np.uint8), labels)


def _rectangles(stats: np.ndarray) -> np.ndarray:
    """Rotated rectangles from region moments: columns cx, cy, length, height, angle (degrees), fill.

    A uniform rectangle of side L has variance L²/12 along that side, so the sides come from the
    eigenvalues of the covariance and the angle from its principal axis."""
    area = stats[:, 0]
    cx = stats[:, 5] / area
    cy = stats[:, 6] / area
    vxx = stats[:, 7] / area - cx * cx + 1 / 12
    vyy = stats[:, 8] / area - cy * cy + 1 / 12
    vxy = stats[:, 9] / area - cx * cy
    half_trace = (vxx + vyy) / 2
    root = np.sqrt(np.maximum(((vxx - vyy) / 2) ** 2 + vxy**2, 0))
    lam1 = half_trace + root
    lam2 = np.maximum(half_trace - root, 1 / 12)
    angle = 0.5 * np.degrees(np.arctan2(2 * vxy, vxx - vyy))
    length = np.sqrt(12 * lam1)
    height = np.sqrt(12 * lam2)
    fill = area / np.maximum(length * height, 1)
    return np.stack([cx, cy, length, height, angle, fill], axis=1)


@dataclass(frozen=True, slots=True)
class _Shape:
    """Proportions a candidate rectangle must have, at the scale of the cue maps."""

    min_height: float = 5.0
    min_length: float = 18.0
    min_aspect: float = 1.8
    max_aspect: float = 7.5
    min_fill: float = 0.45


_SHAPE = _Shape()


def _keep(rects: np.ndarray, shape: _Shape = _SHAPE) -> np.ndarray:
    length, height, fill = rects[:, 2], rects[:, 3], rects[:, 5]
    aspect = length / np.maximum(height, 1e-6)
    ok = (height >= shape.min_height) & (length >= shape.min_length) & (aspect >= shape.min_aspect)
    ok &= (aspect <= shape.max_aspect) & (fill >= shape.min_fill)
    return ok


def _colour_regions(colour: np.ndarray, edge_mask: np.ndarray) -> list[tuple[np.ndarray, PlateColor | None]]:
    """Statistics (``region_stats``) of the regions of each plate background colour that have
    character strokes nearby, with the colour."""
    found: list[tuple[np.ndarray, PlateColor | None]] = []
    close = cv2.getStructuringElement(cv2.MORPH_RECT, (5, 3))
    near_edges = cv2.dilate(edge_mask, cv2.getStructuringElement(cv2.MORPH_RECT, (9, 5)))
    for plate_color, flag in _FLAG_OF.items():
        mask = np.bitwise_and(colour, np.uint8(flag))
        if cv2.countNonZero(mask) < 40:
            continue
        mask = cv2.morphologyEx(mask, cv2.MORPH_CLOSE, close)
        # a plate's colour surrounds its characters: keep colour that has strokes nearby
        mask = cv2.bitwise_and(mask, near_edges)
        mask = cv2.morphologyEx(mask, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, (3, 3)))
        found.append((region_stats(mask), plate_color))
    return found


def _bars(edge: np.ndarray, bridge: int) -> np.ndarray:
    """Bars of vertical edges: ``edge`` closed over gaps up to ``bridge`` pixels wide, then opened
    to drop thin strays. On the grey edge strengths, not a mask: closing and opening are local
    maxima and minima, which commute with a threshold, so ``_bars(edge) > t`` is the bars of the
    mask ``edge > t``, and one pass serves every threshold."""
    bars = cv2.morphologyEx(edge, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_RECT, (bridge, 3)))
    return cv2.morphologyEx(bars, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, (5, 3)))


def _edge_regions(bars: np.ndarray, threshold: int) -> tuple[np.ndarray, PlateColor | None]:
    """Statistics of the bars (``_bars``) stronger than ``threshold`` (no colour)."""
    return region_stats(cv2.threshold(bars, threshold, 255, cv2.THRESH_BINARY)[1]), None


def _edge_threshold(edge: np.ndarray) -> int:
    t, _ = cv2.threshold(edge, 0, 255, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    return int(min(max(t, 12), 60))


def shrink(image: np.ndarray, width: int) -> np.ndarray:
    """Scale ``image`` down to about ``width`` pixels wide (never up): exact halvings with an area
    filter while they fit, then one bilinear step (OpenCV's area filter is slow at other ratios)."""
    while image.shape[1] >= 2 * width:
        h, w = image.shape[:2]
        image = cv2.resize(image[: h - h % 2, : w - w % 2], (w // 2, h // 2), interpolation=cv2.INTER_AREA)
    h, w = image.shape[:2]
    if w > width:
        image = cv2.resize(image, (width, max(1, round(h * width / w))), interpolation=cv2.INTER_LINEAR)
    return image


#: Edge strength of a dim plate's strokes, looked at when the photo's own threshold is far above it.
FAINT_EDGE = 14
#: Lines along which a candidate's character texture is sampled (``_locate_cy.line_texture``).
TEXTURE_LINES = 5
#: A stroke crossing counts past ±max(TEXTURE_MIN_CONTRAST, TEXTURE_CONTRAST × the line's range)
#: around its mean: low enough for a small plate at the locating width (strokes a pixel or two
#: wide, blurred by the downscale) and a dim one at night.
TEXTURE_MIN_CONTRAST = 5.0
TEXTURE_CONTRAST = 0.10
#: Candidates whose middle lines cross fewer strokes than this are dropped (7 characters: ~14).
MIN_TEXTURE = 6


def locate(image: np.ndarray, max_candidates: int = 8) -> list[Candidate]:
    """Plate candidates in a BGR photo, most plate-like first, in the photo's own pixels.

    Every region with a plate's proportions is scored on its character texture: the bright/dark
    crossings along lines through its middle (``_locate_cy.line_texture``); the best
    ``max_candidates`` are returned."""
    image = check_image(image)
    small = shrink(image, LOCATE_WIDTH)
    sx = image.shape[1] / small.shape[1]
    sy = image.shape[0] / small.shape[0]
    colour, edge, luma = cue_maps(small)
    strong = _edge_threshold(edge)
    edge_mask = cv2.threshold(edge, strong, 255, cv2.THRESH_BINARY)[1]
    # strong strokes are bridged over short gaps; weak ones (dim plates: night, haze: half the
    # threshold), broken up by noise, over longer
    long_bars = _bars(edge, 17)
    regions = [
        *_colour_regions(colour, edge_mask),
        _edge_regions(_bars(edge, 9), strong),
        _edge_regions(long_bars, max(8, strong // 2)),
    ]
    if strong // 2 > FAINT_EDGE:
        # a few very strong edges (a caption burnt into the frame, a lamp) set the threshold
        # high above a dim plate's strokes: look once more at a fixed low one
        regions.append(_edge_regions(long_bars, FAINT_EDGE))
    regions = [(stats, c) for stats, c in regions if len(stats)]
    if not regions:
        return []
    # the rectangles of all the regions at once (a few NumPy calls, not a few per mask)
    rects = _rectangles(np.concatenate([stats for stats, _ in regions]))
    colours = [c for stats, c in regions for _ in range(len(stats))]
    ok = _keep(rects)
    if not ok.any():
        return []
    rects = rects[ok]
    colours = [c for c, good in zip(colours, ok.tolist(), strict=True) if good]
    coloured = np.array([c is not None for c in colours])
    # the edge bars hug the characters: widen them to the plate
    rects[~coloured, 2] *= 1.08
    rects[~coloured, 3] *= 1.25
    lines = _locate_cy.line_texture(
        luma, np.ascontiguousarray(rects[:, :5]), TEXTURE_LINES, TEXTURE_MIN_CONTRAST, TEXTURE_CONTRAST
    )
    tex = lines[:, TEXTURE_LINES // 2].astype(np.float64)  # the median line
    aspect = rects[:, 2] / rects[:, 3]
    scores = np.minimum(tex, 24) / 24 + 0.5 * rects[:, 5] + 0.25 * coloured - 0.05 * np.abs(aspect - PLATE_ASPECT)
    keep = np.flatnonzero(tex >= MIN_TEXTURE)
    order = _suppress(rects, keep[np.argsort(-scores[keep])], limit=max_candidates)
    return [
        Candidate(
            float(rects[i, 0] * sx),
            float(rects[i, 1] * sy),
            float(rects[i, 2] * sx),
            float(rects[i, 3] * sy),
            float(rects[i, 4]),
            colours[i],
            float(scores[i]),
        )
        for i in order
    ]


def _boxes(rects: np.ndarray) -> np.ndarray:
    """Axis-aligned bounds x0, y0, x1, y1 of rotated rectangles (cx, cy, length, height, angle)."""
    t = np.radians(rects[:, 4])
    c, s = np.abs(np.cos(t)), np.abs(np.sin(t))
    half_w = (rects[:, 2] * c + rects[:, 3] * s) / 2
    half_h = (rects[:, 2] * s + rects[:, 3] * c) / 2
    return np.stack([rects[:, 0] - half_w, rects[:, 1] - half_h, rects[:, 0] + half_w, rects[:, 1] + half_h], axis=1)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of box ``a`` (x0, y0, x1, y1) with each row of ``b``."""
    iw = np.clip(np.minimum(a[2], b[:, 2]) - np.maximum(a[0], b[:, 0]), 0, None)
    ih = np.clip(np.minimum(a[3], b[:, 3]) - np.maximum(a[1], b[:, 1]), 0, None)
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1]) - inter
    return inter / np.maximum(union, 1e-9)


def _suppress(rects: np.ndarray, order: np.ndarray, overlap: float = 0.7, limit: int | None = None) -> list[int]:
    """Greedy non-maximum suppression of rectangles taken in ``order``; stops once ``limit`` are kept."""
    boxes = _boxes(rects)
    kept: list[int] = []
    for i in order:
        if limit is not None and len(kept) >= limit:
            break
        if not kept or box_iou(boxes[i], boxes[kept]).max() < overlap:
            kept.append(int(i))
    return kept


def crop_matrix(cand: Candidate, height: int = CROP_HEIGHT) -> tuple[np.ndarray, tuple[int, int]]:
    """The affine map (2 × 3) from photo pixels to the upright cut of ``cand`` with its margins,
    scaled to ``height`` pixels tall, and the cut's (width, height)."""
    length = cand.length * (1 + 2 * CROP_MARGIN_X)
    tall = max(cand.height * (1 + 2 * CROP_MARGIN_Y), 1e-3)
    out_w = max(8, round(height * length / tall))
    k = height / tall
    c, s = math.cos(math.radians(cand.angle)), math.sin(math.radians(cand.angle))
    # destination = k · R(−angle) · (source − centre) + (out_w/2, out_h/2)
    m = np.array([[k * c, k * s, 0.0], [-k * s, k * c, 0.0]])
    m[:, 2] = [out_w / 2, height / 2] - m[:, :2] @ [cand.cx, cand.cy]
    return m, (out_w, height)


def plate_crop(image: np.ndarray, cand: Candidate, height: int = CROP_HEIGHT) -> np.ndarray:
    """Cut ``cand`` out of ``image`` upright, with a margin, scaled to ``height`` pixels tall
    (see ``crop_matrix``)."""
    m, (out_w, height) = crop_matrix(cand, height)
    length = cand.length * (1 + 2 * CROP_MARGIN_X)
    tall = max(cand.height * (1 + 2 * CROP_MARGIN_Y), 1e-3)
    k = height / tall
    c, s = math.cos(math.radians(cand.angle)), math.sin(math.radians(cand.angle))
    if k < 0.5:
        # warpAffine has no area filter: shrink the region under the cut first
        half_w = (length * abs(c) + tall * abs(s)) / 2 + 2
        half_h = (length * abs(s) + tall * abs(c)) / 2 + 2
        h, w = image.shape[:2]
        x0, y0 = max(0, int(cand.cx - half_w)), max(0, int(cand.cy - half_h))
        x1, y1 = min(w, math.ceil(cand.cx + half_w)), min(h, math.ceil(cand.cy + half_h))
        if x1 - x0 >= 2 and y1 - y0 >= 2:
            sub = image[y0:y1, x0:x1]
            f = 1.0
            while k / f < 0.5 and min(sub.shape[:2]) >= 4:
                sub = cv2.pyrDown(sub)  # Gaussian blur and halve: OpenCV's fast exact 2:1 path
                f /= 2
            fx, fy = sub.shape[1] / (x1 - x0), sub.shape[0] / (y1 - y0)
            # source pixel (x, y) of the photo is (fx·(x − x0), fy·(y − y0)) in ``sub``
            m = m @ np.array([[1 / fx, 0, x0], [0, 1 / fy, y0], [0, 0, 1]])
            image = sub
    return cv2.warpAffine(image, m, (out_w, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


#: Shears tried by ``estimate_shear`` (shift per pixel: 0.3 ≈ 17°).
SHEARS = np.linspace(-0.36, 0.36, 25)


def estimate_shear(ink: np.ndarray, vertical: bool = False) -> float:
    """The shear that makes the strokes of a binarised plate upright (``vertical``: that makes its
    rows level, a small rotation); 0 when no shear sharpens the projection by more than 2 %."""
    binary = np.ascontiguousarray(ink.T if vertical else ink, dtype=np.uint8)
    if binary.size == 0:
        return 0.0
    scores = _locate_cy.shear_scores(binary, SHEARS)
    best = int(np.argmax(scores))
    if scores[best] <= scores[len(SHEARS) // 2] * 1.02:
        return 0.0
    return float(SHEARS[best])


def apply_shear(image: np.ndarray, shear: float, vertical: bool = False) -> np.ndarray:
    """Shift each row by ``shear`` · (y − h/2) pixels (``vertical``: each column by
    ``shear`` · (x − w/2)), replicating the border; the twin of ``estimate_shear``."""
    if shear == 0.0:
        return image
    h, w = image.shape[:2]
    if vertical:
        m = np.array([[1.0, 0.0, 0.0], [shear, 1.0, -shear * w / 2]])
    else:
        m = np.array([[1.0, shear, -shear * h / 2], [0.0, 1.0, 0.0]])
    return cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
