"""Pure NumPy twins of the Cython kernels (``_locate_cy``, ``_segment_cy``).

They define what the kernels compute: the tests hold each kernel equal to its twin on random and
real input, and ``bench/alpr_eval.py`` times the two on the same input.
"""

from __future__ import annotations

import numpy as np

N_STATS = 10


def cue_maps(bgr: np.ndarray, params: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Colour flags, vertical-edge strength and luma, as ``_locate_cy.cue_maps`` given the table
    ``locate.colour_table(params)``: the flags of each pixel's 15-bit colour (the centre of its
    8 × 8 × 8 cell) straight from the colour rules, no table."""
    from recognition_core.locate import colour_flags

    b, g, r = (bgr[..., i].astype(np.int32) for i in range(3))
    flags = colour_flags((b >> 3) * 8 + 4, (g >> 3) * 8 + 4, (r >> 3) * 8 + 4, params)
    luma = (29 * b + 150 * g + 77 * r) >> 8
    edge = np.zeros(bgr.shape[:2], dtype=np.uint8)
    if luma.shape[0] >= 3 and luma.shape[1] >= 3:
        dx = luma[:, 2:] - luma[:, :-2]
        gx = dx[:-2] + 2 * dx[1:-1] + dx[2:]
        edge[1:-1, 1:-1] = np.minimum(np.abs(gx) >> 2, 255)
    return flags, edge, luma.astype(np.uint8)


def label_regions(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """8-connected components and their statistics, as ``_locate_cy.label_regions``: labels are
    propagated to the smallest pixel index of their component, then renumbered in raster order."""
    h, w = mask.shape
    fg = mask != 0
    big = h * w + 1
    lab = np.where(fg, np.arange(h * w, dtype=np.int64).reshape(h, w), big)
    while True:
        padded = np.pad(lab, 1, constant_values=big)
        nb = lab
        for dy in (-1, 0, 1):
            for dx in (-1, 0, 1):
                nb = np.minimum(nb, padded[1 + dy : 1 + dy + h, 1 + dx : 1 + dx + w])
        nb = np.where(fg, nb, big)
        # pointer jumping: follow each label to the label its own pixel holds
        flat = nb.ravel()
        jumped = np.where(fg.ravel(), flat[np.minimum(flat, h * w - 1)], big).reshape(h, w)
        nb = np.minimum(nb, np.where(fg, jumped, big))
        if np.array_equal(nb, lab):
            break
        lab = nb
    roots = np.unique(lab[fg])  # the smallest index of a component is its first pixel in raster order
    labels = np.zeros((h, w), dtype=np.int32)
    labels[fg] = np.searchsorted(roots, lab[fg]) + 1
    n = roots.size
    ys, xs = np.nonzero(fg)
    k = labels[fg] - 1
    xs_f, ys_f = xs.astype(np.float64), ys.astype(np.float64)
    stats = np.zeros((n, N_STATS))
    stats[:, 0] = np.bincount(k, minlength=n)
    stats[:, 1] = np.full(n, float(w))
    stats[:, 2] = np.full(n, float(h))
    stats[:, 3] = -1
    stats[:, 4] = -1
    np.minimum.at(stats[:, 1], k, xs_f)
    np.minimum.at(stats[:, 2], k, ys_f)
    np.maximum.at(stats[:, 3], k, xs_f)
    np.maximum.at(stats[:, 4], k, ys_f)
    for col, weights in ((5, xs_f), (6, ys_f), (7, xs_f * xs_f), (8, ys_f * ys_f), (9, xs_f * ys_f)):
        stats[:, col] = np.bincount(k, weights=weights, minlength=n)
    return labels, stats


def line_texture(
    luma: np.ndarray, rects: np.ndarray, n_lines: int, min_contrast: float, contrast_frac: float
) -> np.ndarray:
    """Crossings along lines through rotated rectangles, as ``_locate_cy.line_texture``."""
    h, w = luma.shape
    img = luma.astype(np.float64)
    out = np.zeros((len(rects), n_lines), dtype=np.int32)
    for i, (cx, cy, length, height, angle) in enumerate(rects):
        steps = int(length + 1)
        if steps < 2:
            continue
        a = np.radians(angle)
        ca, sa = np.cos(a), np.sin(a)
        v = np.zeros(1) if n_lines == 1 else (np.arange(n_lines) / (n_lines - 1.0) - 0.5) * 0.5 * height
        u = -length / 2 + np.arange(steps) * length / (steps - 1)
        x = np.clip(cx + u[None, :] * ca - v[:, None] * sa, 0, w - 1)
        y = np.clip(cy + u[None, :] * sa + v[:, None] * ca, 0, h - 1)
        x0, y0 = x.astype(np.int64), y.astype(np.int64)
        x1, y1 = np.minimum(x0 + 1, w - 1), np.minimum(y0 + 1, h - 1)
        fx, fy = x - x0, y - y0
        vals = (1 - fy) * ((1 - fx) * img[y0, x0] + fx * img[y0, x1]) + fy * ((1 - fx) * img[y1, x0] + fx * img[y1, x1])
        mean = vals.mean(axis=1, keepdims=True)
        band = np.maximum(contrast_frac * (vals.max(axis=1) - vals.min(axis=1)), min_contrast)[:, None]
        state = np.full(vals.shape, -1)
        state[vals > mean + band] = 1
        state[vals < mean - band] = 0
        out[i] = np.sort(_crossings(state))
    return out


def _crossings(state: np.ndarray) -> np.ndarray:
    """Changes between decided states (0/1) along each row, undecided (−1) pixels carrying the
    last decided state forward."""
    w = state.shape[1]
    idx = np.where(state >= 0, np.arange(w)[None, :], -1)
    np.maximum.accumulate(idx, axis=1, out=idx)
    filled = np.where(idx >= 0, np.take_along_axis(state, np.maximum(idx, 0), axis=1), -1)
    return ((filled[:, 1:] != filled[:, :-1]) & (filled[:, :-1] >= 0)).sum(axis=1)


def shear_scores(binary: np.ndarray, shears: np.ndarray) -> np.ndarray:
    """Sharpness of the column projection under each shear, as ``_locate_cy.shear_scores``."""
    h = binary.shape[0]
    ys, xs = np.nonzero(binary)
    out = np.zeros(len(shears))
    for i, s in enumerate(shears):
        shifted = xs + np.round(s * (ys - h / 2.0)).astype(np.int64)
        counts = np.bincount(shifted - shifted.min(), minlength=1) if xs.size else np.zeros(1)
        out[i] = float(np.sum(counts.astype(np.float64) ** 2))
    return out


def binarize_local(
    gray: np.ndarray, rx: int, ry: int, offset_frac: float, min_offset: int
) -> tuple[np.ndarray, np.ndarray]:
    """Ink where a pixel beats its window mean by the contrast-scaled offset, and 0→1 transitions
    per row, as ``_segment_cy.binarize_local``."""
    if (2 * rx + 1) * (2 * ry + 1) >= 1 << 22 or not 0.0 <= offset_frac <= 1.0 or rx < 0 or ry < 0:
        raise ValueError("window too large or offset fraction out of [0, 1]")
    if not 0 <= min_offset <= 255:
        raise ValueError("min_offset must be in 0..255")
    h, w = gray.shape
    if h == 0 or w == 0:
        return np.zeros((h, w), np.uint8), np.zeros(h, np.int32)
    sub = gray[::2, ::2]
    seen = np.cumsum(np.bincount(sub.ravel(), minlength=256))
    lo = int(np.argmax(seen >= (sub.size * 5 + 99) // 100))
    hi = int(np.argmax(seen >= (sub.size * 95 + 99) // 100))
    offset = max(min_offset, int(offset_frac * (hi - lo)))
    s = np.zeros((h + 1, w + 1), dtype=np.int64)
    s[1:, 1:] = gray.astype(np.int64).cumsum(axis=0).cumsum(axis=1)
    ys, xs = np.arange(h), np.arange(w)
    y0, y1 = np.maximum(ys - ry, 0), np.minimum(ys + ry + 1, h)
    x0, x1 = np.maximum(xs - rx, 0), np.minimum(xs + rx + 1, w)
    total = s[y1][:, x1] - s[y0][:, x1] - s[y1][:, x0] + s[y0][:, x0]
    area = (y1 - y0)[:, None] * (x1 - x0)[None, :]
    ink = (gray.astype(np.int64) * area > total + offset * area).astype(np.uint8)
    on = ink != 0
    starts = on & ~np.pad(on, ((0, 0), (1, 0)))[:, :-1]
    return ink, starts.sum(axis=1).astype(np.int32)


def fit_slots(
    profile: np.ndarray,
    lefts: np.ndarray,
    widths: np.ndarray,
    scales: np.ndarray,
    x_from: float,
    x_to: float,
    x_step: float,
    gap_weight: float,
    outside_weight: float,
    overhang: float,
) -> np.ndarray:
    """Slot-template scores over scales × origins, as ``_segment_cy.fit_slots``."""
    w = len(profile)
    cum = np.concatenate([[0.0], np.cumsum(profile, dtype=np.float64)])

    def prefix(x: np.ndarray) -> np.ndarray:
        xc = np.clip(x, 0, w)
        i = np.minimum(np.floor(xc).astype(np.int64), w - 1) if w else np.zeros_like(xc, dtype=np.int64)
        f = xc - i
        val = cum[i] + f * (cum[np.minimum(i + 1, w)] - cum[i])
        return np.where(x <= 0, 0.0, np.where(x >= w, cum[w], val))

    n_or = 0
    while x_from + n_or * x_step < x_to:
        n_or += 1
    origins = x_from + np.arange(n_or) * x_step
    out = np.zeros((len(scales), n_or))
    for i, sc in enumerate(scales):
        a = origins[:, None] + sc * lefts[None, :]
        b = a + sc * widths[None, :]
        inside = (prefix(b) - prefix(a)).sum(axis=1)
        first, last = origins + sc * lefts[0], origins + sc * (lefts[-1] + widths[-1])
        span = prefix(last) - prefix(first)
        score = (inside - gap_weight * (span - inside) - outside_weight * (cum[w] - span)) / sc
        out[i] = np.where((first < -overhang * sc) | (last > w + overhang * sc), -np.inf, score)
    return out
