# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
# cython: language_level=3
"""Segmentation kernels: local binarisation with row transitions, and the character-slot fit.

The pure NumPy twins live in ``recognition_core/_reference.py``; the tests hold the two equal.
"""

import numpy as np

from libc.math cimport INFINITY
from libc.stdint cimport int32_t, int64_t, uint8_t, uint32_t
from libc.stdlib cimport free, malloc


def binarize_local(const uint8_t[:, ::1] gray, int rx, int ry, double offset_frac, int min_offset):
    """Ink mask (1 = stroke) and its 0→1 transitions per row.

    A pixel is ink when it is brighter than the mean of the (2·rx + 1) × (2·ry + 1) window around
    it (clipped at the borders) by more than the offset: ``offset_frac`` × the cut's contrast
    (its 95th minus its 5th percentile, from a histogram of every other row and column), at least
    ``min_offset``. Window sums come from running column sums (a row enters the window below and
    one leaves above as y advances) and their prefix sums along the row:
        sum(window) = P[x1] − P[x0],  P[x] = Σ_{x' < x} column_sum[x']
    and ink ⇔ gray · area > sum + offset · area, in integers (windows under 2²² pixels).
    A row through a plate's characters starts about two strokes per character.
    """
    cdef Py_ssize_t h = gray.shape[0], w = gray.shape[1], y, x, x0, x1, y0, y1, xa, xb, cy0, cy1
    cdef int32_t total, area, count, offset, lo, hi, rows_in
    cdef int64_t seen, n_lo, n_hi, n_sub
    cdef int64_t hist[256]
    cdef const uint8_t* g
    cdef uint8_t* k
    if rx < 0 or ry < 0:
        raise ValueError("window radii must be >= 0")
    if (2 * <int64_t> rx + 1) * (2 * <int64_t> ry + 1) >= (1 << 22) or not 0.0 <= offset_frac <= 1.0:
        raise ValueError("window too large or offset fraction out of [0, 1]")
    if not 0 <= min_offset <= 255:
        raise ValueError("min_offset must be in 0..255")
    out = np.empty((h, w), dtype=np.uint8)
    rows_arr = np.zeros(h, dtype=np.int32)
    if h == 0 or w == 0:
        return out, rows_arr
    cdef uint8_t[:, ::1] ink = out
    cdef int32_t[::1] rows = rows_arr
    cdef int32_t* colsum = <int32_t*> malloc(w * sizeof(int32_t))
    cdef int32_t* prefix = <int32_t*> malloc((w + 1) * sizeof(int32_t))
    if colsum == NULL or prefix == NULL:
        free(colsum)
        free(prefix)
        raise MemoryError()
    # interior columns, where the window is not clipped horizontally
    xa = rx if rx < w else w
    xb = w - rx - 1 if w - rx - 1 > xa else xa
    with nogil:
        # contrast: q05 and q95 are the smallest values with at least 5 % and 95 % of the
        # pixels of every other row and column at or below them
        n_sub = 0
        for x in range(256):
            hist[x] = 0
        for y in range(0, h, 2):
            g = &gray[y, 0]
            for x in range(0, w, 2):
                hist[g[x]] += 1
                n_sub += 1
        n_lo = (n_sub * 5 + 99) // 100
        n_hi = (n_sub * 95 + 99) // 100
        seen = 0
        lo = -1
        hi = -1
        for x in range(256):
            seen += hist[x]
            if lo < 0 and seen >= n_lo:
                lo = <int32_t> x
            if hi < 0 and seen >= n_hi:
                hi = <int32_t> x
        offset = <int32_t> (offset_frac * (hi - lo))
        if offset < min_offset:
            offset = min_offset
        # column sums over the rows [cy0, cy1) of the current window
        for x in range(w):
            colsum[x] = 0
        cy0 = 0
        cy1 = 0
        prefix[0] = 0
        for y in range(h):
            y0 = y - ry if y >= ry else 0
            y1 = y + ry + 1 if y + ry + 1 <= h else h
            while cy1 < y1:
                g = &gray[cy1, 0]
                for x in range(w):
                    colsum[x] += g[x]
                cy1 += 1
            while cy0 < y0:
                g = &gray[cy0, 0]
                for x in range(w):
                    colsum[x] -= g[x]
                cy0 += 1
            for x in range(w):
                prefix[x + 1] = prefix[x] + colsum[x]
            rows_in = <int32_t> (y1 - y0)
            g = &gray[y, 0]
            k = &ink[y, 0]
            for x in range(xa):
                x1 = x + rx + 1 if x + rx + 1 <= w else w
                total = prefix[x1] - prefix[0]
                area = rows_in * <int32_t> x1
                k[x] = g[x] * area > total + offset * area
            area = rows_in * (2 * rx + 1)
            for x in range(xa, xb):
                total = prefix[x + rx + 1] - prefix[x - rx]
                k[x] = g[x] * area > total + offset * area
            for x in range(xb, w):
                x0 = x - rx if x >= rx else 0
                x1 = x + rx + 1 if x + rx + 1 <= w else w
                total = prefix[x1] - prefix[x0]
                area = rows_in * <int32_t> (x1 - x0)
                k[x] = g[x] * area > total + offset * area
            # a stroke starts where ink follows background (k is 0/1): a vectorisable sum
            count = k[0]
            for x in range(1, w):
                count += k[x] > k[x - 1]
            rows[y] = count
    free(colsum)
    free(prefix)
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
