# cython: boundscheck=False, wraparound=False, cdivision=True, initializedcheck=False
# cython: language_level=3
"""Localisation kernels: per-pixel plate cues, region labelling with moments, line texture, shear.

The pure NumPy twins live in ``recognition_core/_reference.py``; the tests hold the two equal.
"""

import numpy as np

from libc.math cimport cos, sin
from libc.stdint cimport int32_t, uint8_t
from libc.stdlib cimport free, malloc
from libc.string cimport memcpy

# The two row loops of ``cue_maps`` that a compiler can turn into vector code, in C so that they
# can be built twice (function multi-versioning): once for AVX2, once for the baseline x86-64 (SSE2),
# the loader picking the clone the CPU runs. On the baseline the luma loop stays scalar: reading
# every third byte (b, g, r interleaved) needs the shuffles AVX2 has. Elsewhere (other CPUs and
# compilers) they are plain functions. The results are the same integers on every path.
cdef extern from *:
    """
    #if defined(__x86_64__) && defined(__linux__) && defined(__GNUC__)
    #define CP_CLONES __attribute__((target_clones("avx2", "default")))
    #else
    #define CP_CLONES
    #endif

    /* luma (29 b + 150 g + 77 r) >> 8 of a row of w BGR pixels */
    CP_CLONES static void cp_luma_row(const unsigned char *bgr, unsigned char *luma, Py_ssize_t w) {
        for (Py_ssize_t x = 0; x < w; x++)
            luma[x] = (unsigned char) ((29u * bgr[3 * x] + 150u * bgr[3 * x + 1] + 77u * bgr[3 * x + 2]) >> 8);
    }

    /* |Sobel-x| / 4, clipped to 255, of the middle one of three luma rows, at x = 1 .. w - 2:
       |(up[x+1] - up[x-1]) + 2 (mid[x+1] - mid[x-1]) + (down[x+1] - down[x-1])| fits in 16 bits */
    CP_CLONES static void cp_sobel_row(const unsigned char *up, const unsigned char *mid,
                                       const unsigned char *down, unsigned char *edge, Py_ssize_t w) {
        for (Py_ssize_t x = 1; x < w - 1; x++) {
            short gx = (short) ((up[x + 1] - up[x - 1]) + 2 * (mid[x + 1] - mid[x - 1]) + (down[x + 1] - down[x - 1]));
            short sign = gx >> 15;
            short mag = (short) (((gx ^ sign) - sign) >> 2);
            edge[x] = (unsigned char) (mag < 255 ? mag : 255);
        }
    }
    """
    void cp_luma_row(const uint8_t* bgr, uint8_t* luma, Py_ssize_t w) noexcept nogil
    void cp_sobel_row(const uint8_t* up, const uint8_t* mid, const uint8_t* down, uint8_t* edge,
                      Py_ssize_t w) noexcept nogil


# Columns of the region statistics returned by ``label_regions``.
STAT_AREA = 0
STAT_X0 = 1
STAT_Y0 = 2
STAT_X1 = 3
STAT_Y1 = 4
STAT_SX = 5
STAT_SY = 6
STAT_SXX = 7
STAT_SYY = 8
STAT_SXY = 9
N_STATS = 10


def cue_maps(const uint8_t[:, :, ::1] bgr, const uint8_t[::1] table, uint8_t[:, ::1] colour,
             uint8_t[:, ::1] edge, uint8_t[:, ::1] luma):
    """Fill ``colour`` with per-pixel colour flags (looked up in ``table``, indexed by the 15-bit
    colour b>>3 << 10 | g>>3 << 5 | r>>3; ``recognition_core.locate.colour_table`` builds it)
    ``luma`` with (29·b + 150·g + 77·r) >> 8, and ``edge`` with the vertical-edge strength:
    |Sobel-x| of the luma, divided by 4 and clipped to 255 (border pixels 0).

    Sobel-x on luma Y, the 3×3 stencil   -1 0 +1
                                         -2 0 +2
                                         -1 0 +1
    """
    cdef Py_ssize_t h = bgr.shape[0], w = bgr.shape[1], y, x
    cdef const uint8_t* lut
    cdef const uint8_t* src
    cdef uint8_t* crow
    cdef unsigned int b, g, r
    if table.shape[0] != 32768:
        raise ValueError("cue_maps needs a 32768-entry colour table")
    if (colour.shape[0] != h or colour.shape[1] != w or edge.shape[0] != h or edge.shape[1] != w
            or luma.shape[0] != h or luma.shape[1] != w):
        raise ValueError("output maps must have the image's shape")
    if h == 0 or w == 0:
        return
    lut = &table[0]
    with nogil:
        # one pass down the rows: colour and luma of row y, then the Sobel row y − 1, whose three
        # luma rows are now all in cache
        for y in range(h):
            src = &bgr[y, 0, 0]
            crow = &colour[y, 0]
            for x in range(w):
                # unsigned and masked rather than shifted twice: a quarter fewer instructions
                b = src[3 * x]
                g = src[3 * x + 1]
                r = src[3 * x + 2]
                crow[x] = lut[((b & 0xF8) << 7) | ((g & 0xF8) << 2) | (r >> 3)]
            cp_luma_row(src, &luma[y, 0], w)
            edge[y, 0] = 0
            edge[y, w - 1] = 0
            if y >= 2 and w >= 3:
                cp_sobel_row(&luma[y - 2, 0], &luma[y - 1, 0], &luma[y, 0], &edge[y - 1, 0], w)
        # the first and last rows have no Sobel response
        for x in range(w):
            edge[0, x] = 0
            edge[h - 1, x] = 0


cdef inline Py_ssize_t find_root(Py_ssize_t* parent, Py_ssize_t i) noexcept nogil:
    cdef Py_ssize_t root = i, nxt
    while parent[root] != root:
        root = parent[root]
    while parent[i] != root:  # path compression
        nxt = parent[i]
        parent[i] = root
        i = nxt
    return root


cdef inline Py_ssize_t join(Py_ssize_t* parent, Py_ssize_t a, Py_ssize_t b) noexcept nogil:
    a = find_root(parent, a)
    b = find_root(parent, b)
    if a < b:
        parent[b] = a
        return a
    parent[a] = b
    return b


cdef inline double sum_to(double n) noexcept nogil:
    """0 + 1 + … + n."""
    return n * (n + 1.0) / 2.0


cdef inline double sum_sq_to(double n) noexcept nogil:
    """0² + 1² + … + n²."""
    return n * (n + 1.0) * (2.0 * n + 1.0) / 6.0


def label_regions(const uint8_t[:, ::1] mask, int32_t[:, ::1] labels=None):
    """8-connected components of ``mask != 0``, numbered 1..n in raster order of their first pixel.

    Returns an (n, N_STATS) float64 array: area, x0, y0, x1, y1 (inclusive), and the raw moments
    Σx, Σy, Σx², Σy², Σxy (the deskew angle and the rectangle come from these); fills ``labels``
    when given.

    Works on runs (horizontal stretches of foreground), not pixels. A run joins every run of the
    previous row that touches it, diagonals included:

        prev row   ....#####.....##
        this row   ..###....###....      both upper runs touch: start ≤ end + 1, end + 1 ≥ start

    Union–find keeps the smallest run id as root, so roots come in raster order.
    """
    cdef Py_ssize_t h = mask.shape[0], w = mask.shape[1]
    cdef bint want_labels = labels is not None
    if want_labels and (labels.shape[0] != h or labels.shape[1] != w):
        raise ValueError("labels must have the mask's shape")
    if h == 0 or w == 0:
        return np.zeros((0, N_STATS), dtype=np.float64)
    cdef Py_ssize_t cap = h * ((w + 1) // 2) + 1
    cdef int32_t* start = <int32_t*> malloc(cap * sizeof(int32_t))
    cdef int32_t* stop = <int32_t*> malloc(cap * sizeof(int32_t))  # inclusive
    cdef int32_t* row_of = <int32_t*> malloc(cap * sizeof(int32_t))
    cdef Py_ssize_t* parent = <Py_ssize_t*> malloc(cap * sizeof(Py_ssize_t))
    cdef Py_ssize_t* final = NULL
    cdef Py_ssize_t n_runs = 0, n = 0, y, x, i, j, prev_lo = 0, prev_hi = 0, cur_lo, k, r
    cdef const uint8_t* mrow
    cdef int32_t* lrow
    cdef unsigned long long word
    if start == NULL or stop == NULL or row_of == NULL or parent == NULL:
        free(start); free(stop); free(row_of); free(parent)
        raise MemoryError()
    try:
        with nogil:
            for y in range(h):
                mrow = &mask[y, 0]
                cur_lo = n_runs
                x = 0
                while x < w:
                    # skip background eight bytes at a time
                    while x + 8 <= w:
                        memcpy(&word, mrow + x, 8)
                        if word != 0:
                            break
                        x += 8
                    while x < w and mrow[x] == 0:
                        x += 1
                    if x >= w:
                        break
                    start[n_runs] = <int32_t> x
                    while x < w and mrow[x] != 0:
                        x += 1
                    stop[n_runs] = <int32_t> (x - 1)
                    row_of[n_runs] = <int32_t> y
                    parent[n_runs] = n_runs
                    n_runs += 1
                # join with the touching runs of the previous row (both lists are sorted)
                j = prev_lo
                for i in range(cur_lo, n_runs):
                    while j < prev_hi and stop[j] + 1 < start[i]:
                        j += 1
                    k = j
                    while k < prev_hi and start[k] <= stop[i] + 1:
                        join(parent, i, k)
                        k += 1
                prev_lo = cur_lo
                prev_hi = n_runs
            final = <Py_ssize_t*> malloc((n_runs + 1) * sizeof(Py_ssize_t))
            if final != NULL:
                for i in range(n_runs):
                    r = find_root(parent, i)
                    if r == i:
                        final[i] = n
                        n += 1
                    else:
                        final[i] = final[r]
        if final == NULL:
            raise MemoryError()
        stats_arr = np.zeros((n, N_STATS), dtype=np.float64)
        stats_arr[:, STAT_X0] = w
        stats_arr[:, STAT_Y0] = h
        stats_arr[:, STAT_X1] = -1
        stats_arr[:, STAT_Y1] = -1
        _run_stats(start, stop, row_of, final, n_runs, stats_arr)
        if want_labels:
            _paint_labels(start, stop, row_of, final, n_runs, labels)
        return stats_arr
    finally:
        free(start)
        free(stop)
        free(row_of)
        free(parent)
        free(final)


cdef void _run_stats(const int32_t* start, const int32_t* stop, const int32_t* row_of, const Py_ssize_t* final,
                     Py_ssize_t n_runs, double[:, ::1] stats) noexcept:
    cdef Py_ssize_t i
    cdef double a, b, fy, ln, sx
    cdef double* st
    with nogil:
        for i in range(n_runs):
            st = &stats[final[i], 0]
            a = start[i]
            b = stop[i]
            fy = row_of[i]
            ln = b - a + 1.0
            sx = sum_to(b) - sum_to(a - 1.0)
            st[0] += ln
            if a < st[1]:
                st[1] = a
            if fy < st[2]:
                st[2] = fy
            if b > st[3]:
                st[3] = b
            if fy > st[4]:
                st[4] = fy
            st[5] += sx
            st[6] += fy * ln
            st[7] += sum_sq_to(b) - sum_sq_to(a - 1.0)
            st[8] += fy * fy * ln
            st[9] += fy * sx


cdef void _paint_labels(const int32_t* start, const int32_t* stop, const int32_t* row_of, const Py_ssize_t* final,
                        Py_ssize_t n_runs, int32_t[:, ::1] labels) noexcept:
    cdef Py_ssize_t h = labels.shape[0], w = labels.shape[1], i, y, x
    cdef int32_t* lrow
    cdef int32_t v
    with nogil:
        for y in range(h):
            lrow = &labels[y, 0]
            for x in range(w):
                lrow[x] = 0
        for i in range(n_runs):
            lrow = &labels[row_of[i], 0]
            v = <int32_t> (final[i] + 1)
            for x in range(start[i], stop[i] + 1):
                lrow[x] = v


cdef inline double sample(const uint8_t[:, ::1] img, double x, double y) noexcept nogil:
    """Bilinear sample with the border replicated."""
    cdef Py_ssize_t h = img.shape[0], w = img.shape[1], x0, y0, x1, y1
    cdef double fx, fy
    if x < 0:
        x = 0
    if y < 0:
        y = 0
    if x > w - 1:
        x = w - 1
    if y > h - 1:
        y = h - 1
    x0 = <Py_ssize_t> x
    y0 = <Py_ssize_t> y
    x1 = x0 + 1 if x0 + 1 < w else x0
    y1 = y0 + 1 if y0 + 1 < h else y0
    fx = x - x0
    fy = y - y0
    return ((1 - fy) * ((1 - fx) * img[y0, x0] + fx * img[y0, x1])
            + fy * ((1 - fx) * img[y1, x0] + fx * img[y1, x1]))


def line_texture(const uint8_t[:, ::1] luma, const double[:, ::1] rects, int n_lines, double min_contrast,
                 double contrast_frac):
    """Character texture of rotated rectangles (rows cx, cy, length, height, angle in degrees).

    Along ``n_lines`` lines parallel to each rectangle's long side, spread over its middle half,
    the luma is sampled every pixel (bilinear) and the bright/dark crossings are counted with a
    hysteresis of ±max(min_contrast, contrast_frac × (max − min)) around the line's mean:

          ┌─────────────────────────┐
          │ - - - - - - - - - - - - │  ← line at −h/4
          │ 京 A · 8 8 7 3 1 ─ ─ ─ ─│  ← … n_lines lines …
          │ - - - - - - - - - - - - │  ← line at +h/4
          └─────────────────────────┘

    Returns an (n, n_lines) int32 array of crossings, lines sorted by count.
    """
    cdef Py_ssize_t n = rects.shape[0], i, j, k, steps
    cdef double cx, cy, length, height, ang, ca, sa, v, u, x, y, val, lo, hi, mean, band
    cdef int state, count
    if n_lines < 1:
        raise ValueError("n_lines must be >= 1")
    out = np.zeros((n, n_lines), dtype=np.int32)
    cdef int32_t[:, ::1] res = out
    cdef double* buf
    cdef Py_ssize_t cap = 16
    for i in range(n):
        steps = <Py_ssize_t> (rects[i, 2] + 1)
        if steps > cap:
            cap = steps
    buf = <double*> malloc(cap * sizeof(double))
    if buf == NULL:
        raise MemoryError()
    try:
        with nogil:
            for i in range(n):
                cx = rects[i, 0]
                cy = rects[i, 1]
                length = rects[i, 2]
                height = rects[i, 3]
                ang = rects[i, 4] * 3.141592653589793 / 180.0
                ca = cos(ang)
                sa = sin(ang)
                steps = <Py_ssize_t> (length + 1)
                if steps < 2:
                    continue
                for j in range(n_lines):
                    v = 0.0 if n_lines == 1 else (j / (n_lines - 1.0) - 0.5) * 0.5 * height
                    lo = 255.0
                    hi = 0.0
                    mean = 0.0
                    for k in range(steps):
                        u = -length / 2 + k * length / (steps - 1)
                        x = cx + u * ca - v * sa
                        y = cy + u * sa + v * ca
                        val = sample(luma, x, y)
                        buf[k] = val
                        mean += val
                        if val < lo:
                            lo = val
                        if val > hi:
                            hi = val
                    mean /= steps
                    band = contrast_frac * (hi - lo)
                    if band < min_contrast:
                        band = min_contrast
                    state = -1
                    count = 0
                    for k in range(steps):
                        if buf[k] > mean + band:
                            if state == 0:
                                count += 1
                            state = 1
                        elif buf[k] < mean - band:
                            if state == 1:
                                count += 1
                            state = 0
                    res[i, j] = count
                # sort the few counts (insertion sort)
                for j in range(1, n_lines):
                    count = res[i, j]
                    k = j - 1
                    while k >= 0 and res[i, k] > count:
                        res[i, k + 1] = res[i, k]
                        k -= 1
                    res[i, k + 1] = count
    finally:
        free(buf)
    return out


def shear_scores(const uint8_t[:, ::1] binary, const double[::1] shears):
    """For each shear s, the sum of squared column counts of ``binary != 0`` after moving every
    pixel to x + s·(y − h/2), rounded; upright strokes give the sharpest (largest) projection.

    Consecutive rows that move by the same whole number of columns move together, so the column
    counts are prefix sums over rows, P[y, x] = Σ_{y' < y} (binary[y', x] != 0), and each such
    group of rows [ya, yb) adds P[yb] − P[ya] into the histogram at its offset:
        rows ya..yb−1 ──────▶ hist[x + round(s·(y − h/2)) + margin]
    """
    cdef Py_ssize_t h = binary.shape[0], w = binary.shape[1], n = shears.shape[0], i, y, x, ya, off, margin
    cdef double s, yc = h / 2.0, acc, smax = 0.0
    cdef const uint8_t* row
    cdef int32_t* hp
    cdef const int32_t* pa
    cdef const int32_t* pb
    for i in range(n):
        if abs(shears[i]) > smax:
            smax = abs(shears[i])
    margin = <Py_ssize_t> (smax * h + 2)
    cdef Py_ssize_t span = w + 2 * margin
    out = np.zeros(n, dtype=np.float64)
    if h == 0 or w == 0:
        return out
    cdef double[::1] res = out
    cdef int32_t* hist = <int32_t*> malloc(span * sizeof(int32_t))
    cdef int32_t* prefix = <int32_t*> malloc((h + 1) * w * sizeof(int32_t))
    if hist == NULL or prefix == NULL:
        free(hist)
        free(prefix)
        raise MemoryError()
    try:
        with nogil:
            for x in range(w):
                prefix[x] = 0
            for y in range(h):
                row = &binary[y, 0]
                pa = prefix + y * w
                hp = prefix + (y + 1) * w
                for x in range(w):
                    hp[x] = pa[x] + (row[x] != 0)
            for i in range(n):
                s = shears[i]
                for x in range(span):
                    hist[x] = 0
                ya = 0
                off = <Py_ssize_t> round_half_even(s * (0 - yc))
                for y in range(1, h + 1):
                    if y < h and <Py_ssize_t> round_half_even(s * (y - yc)) == off:
                        continue
                    # rows ya..y−1 share the offset ``off``
                    pa = prefix + ya * w
                    pb = prefix + y * w
                    hp = hist + off + margin
                    for x in range(w):
                        hp[x] += pb[x] - pa[x]
                    if y < h:
                        ya = y
                        off = <Py_ssize_t> round_half_even(s * (y - yc))
                acc = 0.0
                for x in range(span):
                    acc += <double> hist[x] * <double> hist[x]
                res[i] = acc
    finally:
        free(hist)
        free(prefix)
    return out


cdef inline double round_half_even(double v) noexcept nogil:
    """NumPy's rounding (half to even), so the kernel and its reference shift rows alike."""
    cdef double f = <double> (<long long> v)
    if v < 0 and f != v:
        f -= 1.0
    cdef double frac = v - f
    if frac > 0.5:
        return f + 1.0
    if frac < 0.5:
        return f
    return f if (<long long> f) % 2 == 0 else f + 1.0
