# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
# cython: language_level=3
"""Segmentation kernels: local binarisation with row transitions, and the character-slot fit.

The pure NumPy twins live in ``recognition_core/_reference.py``; the tests hold the two equal.
"""

import numpy as np

from libc.math cimport INFINITY
from libc.stdint cimport int32_t, int64_t, uint8_t


def binarize_local(const uint8_t[:, ::1] gray, int rx, int ry, int offset):
    """Ink mask (1 = stroke) and its 0→1 transitions per row.

    A pixel is ink when it is brighter than the mean of the (2·rx + 1) × (2·ry + 1) window around
    it (clipped at the borders) by more than ``offset``. The window sums come from an integral
    image S, where S[y, x] sums gray[:y, :x]:
        sum(window) = S[y1, x1] − S[y0, x1] − S[y1, x0] + S[y0, x0]
    and ink ⇔ gray · area > sum + offset · area (integers only). A row through a plate's
    characters starts about two strokes per character.
    """
    cdef Py_ssize_t h = gray.shape[0], w = gray.shape[1], y, x, x0, x1, y0, y1, xa, xb
    cdef int64_t acc, total, area, off = offset
    cdef int32_t count, cur, prev
    cdef const int64_t* top
    cdef const int64_t* bottom
    cdef const uint8_t* g
    cdef uint8_t* k
    if rx < 0 or ry < 0:
        raise ValueError("window radii must be >= 0")
    integral_arr = np.zeros((h + 1, w + 1), dtype=np.int64)
    out = np.zeros((h, w), dtype=np.uint8)
    rows_arr = np.zeros(h, dtype=np.int32)
    cdef int64_t[:, ::1] s = integral_arr
    cdef uint8_t[:, ::1] ink = out
    cdef int32_t[::1] rows = rows_arr
    if h == 0 or w == 0:
        return out, rows_arr
    # interior columns, where the window is not clipped horizontally
    xa = rx if rx < w else w
    xb = w - rx - 1 if w - rx - 1 > xa else xa
    with nogil:
        for y in range(h):
            acc = 0
            g = &gray[y, 0]
            for x in range(w):
                acc += g[x]
                s[y + 1, x + 1] = s[y, x + 1] + acc
        for y in range(h):
            y0 = y - ry if y >= ry else 0
            y1 = y + ry + 1 if y + ry + 1 <= h else h
            top = &s[y0, 0]
            bottom = &s[y1, 0]
            g = &gray[y, 0]
            k = &ink[y, 0]
            for x in range(xa):
                x1 = x + rx + 1 if x + rx + 1 <= w else w
                total = bottom[x1] - top[x1] - bottom[0] + top[0]
                area = (y1 - y0) * x1
                k[x] = g[x] * area > total + off * area
            area = (y1 - y0) * (2 * rx + 1)
            for x in range(xa, xb):
                total = bottom[x + rx + 1] - top[x + rx + 1] - bottom[x - rx] + top[x - rx]
                k[x] = g[x] * area > total + off * area
            for x in range(xb, w):
                x0 = x - rx if x >= rx else 0
                x1 = x + rx + 1 if x + rx + 1 <= w else w
                total = bottom[x1] - top[x1] - bottom[x0] + top[x0]
                area = (y1 - y0) * (x1 - x0)
                k[x] = g[x] * area > total + off * area
            count = 0
            prev = 0
            for x in range(w):
                cur = k[x]
                count += cur & (prev ^ 1)
                prev = cur
            rows[y] = count
    return out, rows_arr


def fit_slots(const double[::1] profile, const double[::1] lefts, const double[::1] widths,
              const double[::1] scales, double x_from, double x_to, double x_step, double gap_weight,
              double outside_weight, double overhang):
    """Score every placement of a slot template on a column profile.

    A placement is (scale, origin): slot i covers [origin + scale·lefts[i], + scale·widths[i]).
    Its score is the ink inside the slots, minus ``gap_weight`` × the ink between them (from the
    first slot's left to the last slot's right), minus ``outside_weight`` × the ink left and right
    of the template, per unit of scale, from the prefix sums of the
    profile with linear interpolation at fractional columns. A placement reaching more than
    ``overhang`` × scale past either end of the profile scores −inf.

    Returns a (len(scales), n_origins) float64 array; origins are x_from, x_from + x_step, … < x_to.
    """
    cdef Py_ssize_t w = profile.shape[0], n_slots = lefts.shape[0], n_sc = scales.shape[0], i, j, k, n_or
    cdef double sc, org, inside, span, a, b, total_w
    if widths.shape[0] != n_slots or n_slots == 0:
        raise ValueError("lefts and widths must have the same, non-zero length")
    if x_step <= 0:
        raise ValueError("x_step must be positive")
    n_or = 0
    while x_from + n_or * x_step < x_to:
        n_or += 1
    out = np.zeros((n_sc, n_or), dtype=np.float64)
    cum_arr = np.zeros(w + 1, dtype=np.float64)
    cdef double[:, ::1] res = out
    cdef double[::1] cum = cum_arr
    with nogil:
        for i in range(w):
            cum[i + 1] = cum[i] + profile[i]
        for i in range(n_sc):
            sc = scales[i]
            for j in range(n_or):
                org = x_from + j * x_step
                inside = 0.0
                total_w = 0.0
                for k in range(n_slots):
                    a = org + sc * lefts[k]
                    b = a + sc * widths[k]
                    inside += prefix(cum, w, b) - prefix(cum, w, a)
                    total_w += sc * widths[k]
                a = org + sc * lefts[0]
                b = org + sc * (lefts[n_slots - 1] + widths[n_slots - 1])
                if a < -overhang * sc or b > w + overhang * sc:
                    res[i, j] = -INFINITY
                    continue
                span = prefix(cum, w, b) - prefix(cum, w, a)
                res[i, j] = (inside - gap_weight * (span - inside) - outside_weight * (cum[w] - span)) / sc
    return out


cdef inline double prefix(const double[::1] cum, Py_ssize_t w, double x) noexcept nogil:
    """Ink in columns [0, x) with the column under a fractional x counted in proportion."""
    cdef Py_ssize_t i
    cdef double f
    if x <= 0.0:
        return 0.0
    if x >= w:
        return cum[w]
    i = <Py_ssize_t> x
    f = x - i
    return cum[i] + f * (cum[i + 1] - cum[i])
