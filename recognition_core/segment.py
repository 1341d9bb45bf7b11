"""Character segmentation (字符分割) of an upright plate cut whose strokes are bright.

1. Binarise against the local mean (``_segment_cy.binarize_local``); rows through the characters
   cross many strokes, which finds the character band; the lean of the strokes is sheared away.
2. The band's tall connected components fix the character height, and with it the layout: GA 36
   places the characters at fixed proportions of their height (``LAYOUTS``), with the wide gap
   that holds the separator dot after the second one.
3. The layout is slid and scaled over the band's column profile (``_segment_cy.fit_slots``); each
   slot then takes the ink components whose centres fall in it, so a province character that
   comes in pieces (川, 沪, 鲁) is one cut, and the dot, in no slot, is dropped.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from recognition_core import _segment_cy
from recognition_core.locate import apply_shear, estimate_shear, label_regions

# Character layouts in units of the character height (90 mm): (left edges, widths).
# Regular plates: 45 mm characters, 12 mm apart, 34 mm between the 2nd and 3rd (the dot).
# New-energy plates: 43 mm characters, 9 mm apart, 49 mm between the 2nd and 3rd.
LAYOUTS: dict[int, tuple[np.ndarray, np.ndarray]] = {
    7: (np.array([0, 57, 136, 193, 250, 307, 364]) / 90.0, np.full(7, 45 / 90.0)),
    8: (np.array([0, 52, 144, 196, 248, 300, 352, 404]) / 90.0, np.full(8, 43 / 90.0)),
}
#: Plate (width, height) in units of the character height: 440 × 140 mm, new-energy 480 × 140 mm.
PLATE_SIZES = {7: (440 / 90.0, 140 / 90.0), 8: (480 / 90.0, 140 / 90.0)}


@dataclass(frozen=True, slots=True)
class Segmentation:
    """Character cuts of one plate: ``boxes`` as ``(x, y, w, h)`` in the (sheared) plate cut,
    ``glyphs`` the matching grayscale cuts (bright strokes), ``tilt`` and ``shear`` the vertical
    and horizontal shears that levelled the cut, ``score`` how well the layout fits (ink inside
    the slots less ink between and beside them, per character height squared: a clean plate
    scores about 1.4, text that is not a plate mostly under 1); ``plate_corners`` gives the
    whole plate's outline."""

    boxes: list[tuple[int, int, int, int]]
    glyphs: list[np.ndarray]
    tilt: float
    shear: float
    score: float
    n_chars: int
    origin: float  # left edge of the first character in the levelled cut
    char_height: float
    band_middle: float
    cut_shape: tuple[int, int]

    @property
    def plate_corners(self) -> np.ndarray:
        """The plate's outline (4 × 2: top-left, top-right, bottom-right, bottom-left) in the
        pixels of the cut as given, drawn from the characters' size and place."""
        lefts, widths = LAYOUTS[self.n_chars]
        plate_w, plate_h = PLATE_SIZES[self.n_chars]
        cx = self.origin + self.char_height * (lefts[-1] + widths[-1]) / 2
        hw, hh = self.char_height * plate_w / 2, self.char_height * plate_h / 2
        xs = np.array([cx - hw, cx + hw, cx + hw, cx - hw])
        ys = np.array([-hh, -hh, hh, hh]) + self.band_middle
        # undo the shears: upright moved x by shear·(y − h/2), levelling moved y by tilt·(x − w/2)
        h, w = self.cut_shape
        xs = xs - self.shear * (ys - h / 2)
        ys = ys - self.tilt * (xs - w / 2)
        return np.stack([xs, ys], axis=1)


#: How far (in character heights) the layout may reach past the cut: a province character half
#: outside the cut can still be read from the rest of the plate.
OVERHANG = 0.3
#: Ink must beat its neighbourhood's mean by this share of the cut's contrast (and by 4 levels).
INK_OFFSET = 0.06


def binarize(gray: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Ink mask (1 = stroke) against the local mean, and the row transitions."""
    r = max(2, gray.shape[0] // 4)
    return _segment_cy.binarize_local(np.ascontiguousarray(gray, dtype=np.uint8), r, r, INK_OFFSET, 4)


def _band(transitions: np.ndarray, n_chars: int) -> tuple[int, int] | None:
    """The longest run of rows that cross at least ``n_chars`` − 1 strokes (a one-row gap is
    bridged)."""
    busy = transitions >= max(4, n_chars - 1)
    busy[1:-1] |= busy[:-2] & busy[2:]
    edges = np.flatnonzero(np.diff(np.concatenate(([0], busy.view(np.int8), [0]))))
    if edges.size == 0:
        return None
    starts, ends = edges[0::2], edges[1::2]
    i = int(np.argmax(ends - starts))
    return int(starts[i]), int(ends[i])


def _char_band(ink: np.ndarray, rough: tuple[int, int]) -> tuple[int, int, np.ndarray, np.ndarray] | None:
    """Refine the band from the ink components crossing it: top and bottom of the tall ones."""
    labels, stats = label_regions(ink)
    if len(stats) == 0:
        return None
    y0, y1 = rough
    top, bottom = stats[:, 2], stats[:, 4] + 1
    height = bottom - top
    width = stats[:, 3] - stats[:, 1] + 1
    crossing = (top < y1) & (bottom > y0)
    tall = crossing & (height >= 0.6 * (y1 - y0)) & (height <= 2.2 * (y1 - y0)) & (width <= 1.2 * height)
    if tall.sum() < 2:
        return None
    band_top = int(_median(top[tall]))
    band_bottom = int(_median(bottom[tall]))
    if band_bottom - band_top < 6:
        return None
    return band_top, band_bottom, labels, stats


def _stroke_pieces(stats: np.ndarray, y0: int, y1: int) -> np.ndarray:
    """Which ink components can be (pieces of) characters: they reach into the middle of the band
    and are neither specks nor taller than a character (the plate's frame, rivets, bolts)."""
    band = y1 - y0
    top, bottom = stats[:, 2], stats[:, 4] + 1
    return (bottom > y0 + 0.2 * band) & (top < y1 - 0.2 * band) & (stats[:, 0] >= 3) & (bottom - top <= 1.3 * band)


def _stroke_profile(labels: np.ndarray, stats: np.ndarray, y0: int, y1: int) -> np.ndarray:
    """Column counts, over the band, of the ink of the components that can be characters."""
    keep = np.zeros(len(stats) + 1, dtype=np.uint8)
    keep[1:] = _stroke_pieces(stats, y0, y1)
    return keep[labels[y0:y1]].sum(axis=0, dtype=np.int32).astype(np.float64)


def _median(values: np.ndarray) -> float:
    """Median of a short array (``np.median`` costs ~25 µs of overhead per call)."""
    ordered = sorted(values.tolist())
    n = len(ordered)
    return (ordered[(n - 1) // 2] + ordered[n // 2]) / 2


def segment(gray: np.ndarray, n_chars: int = 7) -> Segmentation | None:
    """Cut an upright plate (uint8 gray, bright strokes on dark) into ``n_chars`` (7 or 8)
    characters; None when no row of characters is found."""
    return next(segmentations(gray, n_chars, 1), None)


def segmentations(gray: np.ndarray, n_chars: int = 7, count: int = 2) -> Iterator[Segmentation]:
    """Up to ``count`` cuts of an upright plate, best layout fit first, each made only when asked
    for; the later ones place the layout at least half a character pitch away from the earlier
    (a plate whose end is hidden, or with a bolt or a frame edge beside its characters, can fit
    best one character off)."""
    if n_chars not in LAYOUTS:
        raise ValueError(f"a plate has 7 or 8 characters, not {n_chars}")
    gray = np.ascontiguousarray(gray, dtype=np.uint8)
    if gray.ndim != 2 or gray.shape[0] < 12 or gray.shape[1] < 24:
        return
    ink, transitions = binarize(gray)
    # level the rows first (a small rotation), then stand the strokes upright
    tilt = estimate_shear(ink, vertical=True)
    if tilt:
        gray = apply_shear(gray, tilt, vertical=True)
        ink, transitions = binarize(gray)
    rough = _band(transitions, n_chars)
    if rough is None:
        return
    shear = estimate_shear(ink[rough[0] : rough[1]])
    if shear:
        gray = apply_shear(gray, shear)
        ink, transitions = binarize(gray)
        rough = _band(transitions, n_chars) or rough
    # the plate's frame can touch the characters: drop horizontal runs longer than a character
    run = max(3, round(1.0 * (rough[1] - rough[0])))
    frame = cv2.morphologyEx(ink, cv2.MORPH_OPEN, cv2.getStructuringElement(cv2.MORPH_RECT, (run, 1)))
    ink = cv2.subtract(ink, frame)
    found = _char_band(ink, rough)
    if found is None:
        return
    y0, y1, labels, stats = found
    char_h = y1 - y0
    profile = _stroke_profile(labels, stats, y0, y1)
    lefts, widths = LAYOUTS[n_chars]
    w = gray.shape[1]
    # the band may be a little short of the characters' height (tops of 1, bottoms of J)
    scales = char_h * np.linspace(0.85, 1.4, 12)
    x_from = -OVERHANG * 1.4 * char_h
    scores = _segment_cy.fit_slots(profile, lefts, widths, scales, x_from, float(w), 1.0, 1.0, 0.7, OVERHANG)
    origins = x_from + np.arange(scores.shape[1]) if scores.size else np.zeros(0)
    for _ in range(count):
        if scores.size == 0 or not np.isfinite(scores.max()):
            return
        si, oi = np.unravel_index(int(np.argmax(scores)), scores.shape)
        scale, origin = float(scales[si]), float(origins[oi])
        boxes, glyphs = _cut(gray, stats, y0, y1, origin, scale, lefts, widths)
        fit = float(scores[si, oi]) / max(char_h, 1)
        yield Segmentation(boxes, glyphs, tilt, shear, fit, n_chars, origin, scale, (y0 + y1) / 2, (gray.shape[0], w))
        # the next placement starts at least half a pitch (57 mm = 0.63 character heights) away
        scores[:, np.abs(origins - origin) < 0.5 * 0.63 * char_h] = -np.inf


def _cut(
    gray: np.ndarray,
    stats: np.ndarray,
    y0: int,
    y1: int,
    origin: float,
    scale: float,
    lefts: np.ndarray,
    widths: np.ndarray,
) -> tuple[list[tuple[int, int, int, int]], list[np.ndarray]]:
    """Each slot's cut: the ink components whose centres fall in the slot (a little slack either
    side), bounded by the slot widened by twice that slack; the bare slot when it holds none."""
    h, w = gray.shape
    area = stats[:, 0]
    cx = stats[:, 5] / area
    band = y1 - y0
    useful = _stroke_pieces(stats, y0, y1)
    sx0 = origin + scale * lefts
    sx1 = sx0 + scale * widths
    slack = 0.12 * (sx1 - sx0)
    # every component goes to the one slot nearest its centre, if it falls in that slot (± slack)
    centres = (sx0 + sx1) / 2
    nearest = np.abs(cx[None, :] - centres[:, None]).argmin(axis=0)
    members = useful[None, :] & (nearest[None, :] == np.arange(len(lefts))[:, None])
    members &= (cx[None, :] >= (sx0 - slack)[:, None]) & (cx[None, :] < (sx1 + slack)[:, None])
    # a letter or digit is one tall stroke group: its slot drops specks (the separator dot, dirt);
    # the province character (slot 0) keeps its pieces
    height = stats[:, 4] + 1 - stats[:, 2]
    members[1:] &= (height >= 0.45 * band)[None, :]
    left_ink = np.where(members, stats[None, :, 1], np.inf).min(axis=1)
    right_ink = np.where(members, stats[None, :, 3] + 1, -np.inf).max(axis=1)
    has = members.any(axis=1)
    bx0 = np.where(has, np.maximum(left_ink, sx0 - 2 * slack), sx0)
    bx1 = np.where(has, np.minimum(right_ink, sx1 + 2 * slack), sx1)
    ix0 = np.clip(np.floor(bx0), 0, w - 1).astype(int)
    ix1 = np.maximum(np.clip(np.ceil(bx1), 0, w).astype(int), ix0 + 1)
    pad_y = max(1, band // 12)
    iy0, iy1 = max(0, y0 - pad_y), min(h, y1 + pad_y)
    boxes = [(int(a), iy0, int(b - a), iy1 - iy0) for a, b in zip(ix0, ix1, strict=True)]
    glyphs = [gray[iy0:iy1, max(0, a - 1) : min(w, b + 1)] for a, b in zip(ix0, ix1, strict=True)]
    return boxes, glyphs
