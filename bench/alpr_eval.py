"""Plate recognition on the dev photos: the DESIGN section 12 metrics, and the kernel speed-ups.

On ``../shared/data/alpr/easypr-dev`` (or ``--data DIR``): read rate (number and colour right),
false-read rate (outputs matching no plate of their photo), located rate (an output box with
IoU ≥ 0.5 against the bounding box of the labelled rotated rectangle), 1-error rate (an output
within one character edit of the plate), and per-photo latency on one core with decoding
excluded (wall clock pinned to one CPU; the process CPU time beside it, which a machine busy with
other work inflates less). On ``ccpd-crops-dev``: exact reads of cut-out plates. Then every Cython
kernel against its NumPy reference on the same input, in the same run.

``--reader combined|sequence|segment`` picks the plate reader (default: the pipeline's); the crop row also
gives the exact rate on the 30 % of crops held out of training (``held``). ``--curve`` adds the
trade-off of the confidence threshold: read and false-read rates of the photos at each of
``CURVE_THRESHOLDS`` (the whole pipeline at that ``min_confidence``, not a filter of one run's
reads, since the threshold also decides which cuts are read a second time).

``python bench/alpr_eval.py [--quick] [--json] [--data DIR] [--misses] [--reader KIND] [--curve]``
"""

from __future__ import annotations

import json
import os
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _harness import Report, parser, percentiles

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "alpr"
#: Confidence thresholds of ``--curve``.
CURVE_THRESHOLDS = (0.5, 0.6, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95)


@contextmanager
def one_core() -> Iterator[None]:
    """Pin this process to one CPU (OpenCV and BLAS threads included) for the duration."""
    import cv2

    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    old = os.sched_getaffinity(0) if hasattr(os, "sched_getaffinity") else None
    if old:
        os.sched_setaffinity(0, {min(old)})
    try:
        yield
    finally:
        if old:
            os.sched_setaffinity(0, old)
        cv2.setNumThreads(threads)


def label_box(p: dict[str, Any]) -> tuple[float, float, float, float]:
    """Bounding box (x, y, w, h) of a labelled rotated rectangle."""
    import cv2

    pts = cv2.boxPoints(((p["cx"], p["cy"]), (p["w"], p["h"]), p["angle"]))
    x0, y0 = pts.min(axis=0)
    x1, y1 = pts.max(axis=0)
    return float(x0), float(y0), float(x1 - x0), float(y1 - y0)


def iou(a: tuple[float, ...], b: tuple[float, ...]) -> float:
    ax, ay, aw, ah = a
    bx, by, bw, bh = b
    iw = max(0.0, min(ax + aw, bx + bw) - max(ax, bx))
    ih = max(0.0, min(ay + ah, by + bh) - max(ay, by))
    inter = iw * ih
    union = aw * ah + bw * bh - inter
    return inter / union if union > 0 else 0.0


def edit_distance(a: str, b: str) -> int:
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        cur = [i]
        for j, cb in enumerate(b, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (ca != cb)))
        prev = cur
    return prev[-1]


def evaluate_photos(
    folder: Path, limit: int | None, misses: list[str], reader: str | None = None, min_confidence: float | None = None
) -> dict[str, Any]:
    from recognition_core.pipeline import MIN_CONFIDENCE, ImageRefused, read_image, recognize

    threshold = MIN_CONFIDENCE if min_confidence is None else min_confidence

    labels = json.loads((folder / "labels.json").read_text(encoding="utf-8"))
    if limit:
        labels = labels[:limit]
    plates = read = located = one_error = outputs = false_reads = refused = 0
    times: list[float] = []
    cpu_times: list[float] = []
    with one_core():
        for entry in labels:
            truth = entry["plates"]
            plates += len(truth)
            try:
                image = read_image(folder / entry["file"])
            except ImageRefused:
                refused += 1
                misses.append(f"{entry['file']}: refused")
                continue
            start, cpu_start = time.perf_counter(), time.process_time()
            found = recognize(image, threshold, reader=reader)
            times.append(time.perf_counter() - start)
            cpu_times.append(time.process_time() - cpu_start)
            outputs += len(found)
            for rec in found:
                if not any(rec.identity.plate == t["plate"] and rec.identity.color.value == t["color"] for t in truth):
                    false_reads += 1
                    misses.append(f"{entry['file']}: false read {rec.identity.plate} {rec.identity.color.value}")
            for t in truth:
                got = [(r.identity.plate, r.identity.color.value) for r in found]
                if (t["plate"], t["color"]) in got:
                    read += 1
                else:
                    misses.append(f"{entry['file']}: missed {t['plate']} {t['color']} (read {got})")
                gt = label_box(t)
                if any(iou(gt, r.box) >= 0.5 for r in found):
                    located += 1
                if any(edit_distance(r.identity.plate, t["plate"]) <= 1 for r in found):
                    one_error += 1
    return {
        "photos": len(labels),
        "plates": plates,
        "read_rate": read / max(plates, 1),
        "false_read_rate": false_reads / max(outputs, 1),
        "located_rate": located / max(plates, 1),
        "one_error_rate": one_error / max(plates, 1),
        "outputs": outputs,
        "refused": refused,
        "latency": percentiles(times) if times else None,
        "cpu": percentiles(cpu_times) if cpu_times else None,
    }


def plate_of_file(name: str) -> str:
    return re.sub(r"_\d+$", "", Path(name).stem)


def evaluate_crops(folder: Path, limit: int | None, misses: list[str], reader: str | None = None) -> dict[str, Any]:
    from recognition_core.pipeline import ImageRefused, read_image, recognize_crop
    from recognition_core.train.ccpd import holdout

    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    if limit:
        files = files[:limit]
    exact = held = held_exact = 0
    times: list[float] = []
    with one_core():
        for path in files:
            is_held = holdout(path.name)
            held += is_held
            try:
                image = read_image(path)
            except ImageRefused:
                misses.append(f"{path.name}: refused")
                continue
            start = time.perf_counter()
            rec = recognize_crop(image, reader=reader)
            times.append(time.perf_counter() - start)
            want = plate_of_file(path.name)
            if rec is not None and rec.identity.plate == want:
                exact += 1
                held_exact += is_held
            else:
                misses.append(f"{path.name}: read {rec.identity.plate if rec else None}")
    latency = percentiles(times) if times else None
    return {"crops": len(files), "exact_rate": exact / max(len(files), 1), "held_out": held,
            "held_exact_rate": held_exact / max(held, 1), "latency": latency}  # fmt: skip


def _median_time(fn: Callable[[], Any], repeat: int) -> float:
    fn()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        fn()
        samples.append(time.perf_counter() - start)
    return float(np.median(samples))


def kernel_speedups(folder: Path | None, quick: bool) -> list[dict[str, Any]]:
    """Each Cython kernel and its NumPy reference on the same real input (a dev photo at the
    locating width, its candidates, and the best one's upright cut), or on synthetic input
    without the data."""
    import cv2

    from recognition_core import _locate_cy, _reference, _segment_cy, locate, segment

    image = None
    if folder is not None and (folder / "labels.json").is_file():
        # the first photo at least as wide as the locating width: a full-size cue map
        for entry in json.loads((folder / "labels.json").read_text(encoding="utf-8")):
            image = cv2.imread(str(folder / entry["file"]))
            if image is not None and image.shape[1] >= locate.LOCATE_WIDTH:
                break
    if image is None:
        rng = np.random.default_rng(0)
        image = cv2.GaussianBlur(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8), (5, 5), 0)
    small = np.ascontiguousarray(locate.shrink(image, locate.LOCATE_WIDTH))
    table = locate._colour_table()
    _, edge, luma = locate.cue_maps(small)
    mask = np.ascontiguousarray(cv2.morphologyEx((edge > 40).astype(np.uint8), cv2.MORPH_CLOSE, np.ones((3, 9))))
    cands = locate.locate(image)
    crop = locate.plate_crop(image, cands[0]) if cands else cv2.resize(small, (180, 56))
    rects = np.array([[c.cx, c.cy, c.length, c.height, c.angle] for c in cands] or [[100.0, 100.0, 120.0, 36.0, 3.0]])
    rects[:, :4] *= small.shape[1] / image.shape[1]
    gray = np.ascontiguousarray(cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY))
    ink, _ = segment.binarize(gray)
    profile = ink.sum(axis=0).astype(np.float64)
    lefts, widths = segment.LAYOUTS[7]
    scales = 30 * np.linspace(0.85, 1.4, 12)
    shears = locate.SHEARS
    repeat = 5 if quick else 20
    out_c = np.empty(small.shape[:2], np.uint8)
    out_e = np.empty(small.shape[:2], np.uint8)
    out_l = np.empty(small.shape[:2], np.uint8)
    labels = np.empty(mask.shape, np.int32)
    r = max(2, gray.shape[0] // 4)
    texture = (locate.TEXTURE_LINES, locate.TEXTURE_MIN_CONTRAST, locate.TEXTURE_CONTRAST)
    cases: list[tuple[str, str, Callable[[], Any], Callable[[], Any]]] = [
        ("cue_maps", f"{small.shape[1]}×{small.shape[0]} photo",
         lambda: _locate_cy.cue_maps(small, table, out_c, out_e, out_l),
         lambda: _reference.cue_maps(small, locate._COLOUR_PARAMS)),
        ("label_regions", f"{mask.shape[1]}×{mask.shape[0]} edge mask", lambda: _locate_cy.label_regions(mask, labels),
         lambda: _reference.label_regions(mask)),
        ("line_texture", f"{len(rects)} candidates",
         lambda: _locate_cy.line_texture(luma, rects, *texture),
         lambda: _reference.line_texture(luma, rects, *texture)),
        ("shear_scores", f"{ink.shape[1]}×{ink.shape[0]} ink, {len(shears)} shears",
         lambda: _locate_cy.shear_scores(ink, shears), lambda: _reference.shear_scores(ink, shears)),
        ("binarize_local", f"{gray.shape[1]}×{gray.shape[0]} plate",
         lambda: _segment_cy.binarize_local(gray, r, r, 0.06, 4),
         lambda: _reference.binarize_local(gray, r, r, 0.06, 4)),
        ("fit_slots", f"{len(profile)} columns, {len(scales)} scales",
         lambda: _segment_cy.fit_slots(profile, lefts, widths, scales, -12.0, float(len(profile)), 1.0, 1.0, 0.7, 0.3),
         lambda: _reference.fit_slots(profile, lefts, widths, scales, -12.0, float(len(profile)), 1.0, 1.0, 0.7, 0.3)),
    ]  # fmt: skip
    rows = []
    with one_core():
        for name, what, fast, ref in cases:
            t_fast = _median_time(fast, repeat * 5)
            t_ref = _median_time(ref, 1 if name == "label_regions" else repeat)
            rows.append({"kernel": name, "input": what, "cython_ms": t_fast * 1e3, "numpy_ms": t_ref * 1e3,
                         "speedup": t_ref / t_fast})  # fmt: skip
    return rows


def _rounded(row: dict[str, Any], digits: int = 4) -> dict[str, Any]:
    return {k: (round(v, digits) if isinstance(v, float) else v) for k, v in row.items()}


def main(argv: list[str] | None = None) -> int:
    p = parser("Plate recognition metrics on the dev photos, and Cython kernel speed-ups")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder holding easypr-dev and ccpd-crops-dev")
    p.add_argument("--misses", action="store_true", help="list every miss and false read on stderr")
    p.add_argument(
        "--reader", choices=("combined", "sequence", "segment"), help="plate reader (default: the pipeline's)"
    )
    p.add_argument("--curve", action="store_true", help="read and false-read rates at each confidence threshold")
    args = p.parse_args(argv)
    # two tables for people (the data sets, the kernels); one JSON object for machines
    quality, kernels = Report("alpr_eval: dev data"), Report("alpr_eval: Cython kernels vs NumPy references")
    curve = Report("alpr_eval: confidence threshold → read and false-read rates (easypr-dev)")
    misses: list[str] = []
    photos = args.data / "easypr-dev"
    crops = args.data / "ccpd-crops-dev"
    if (photos / "labels.json").is_file():
        m = evaluate_photos(photos, 25 if args.quick else None, misses, args.reader)
        lat = m.pop("latency") or {}
        cpu = m.pop("cpu") or {}
        row = {"set": "easypr-dev", "n": m["plates"], "read": m["read_rate"], "false": m["false_read_rate"],
               "located": m["located_rate"], "1-err": m["one_error_rate"], "p50_ms": lat.get("p50_ms"),
               "p95_ms": lat.get("p95_ms"), "cpu_p50": cpu.get("p50_ms"), "cpu_p95": cpu.get("p95_ms")}  # fmt: skip
        if args.json:
            row |= {"photos": m["photos"], "outputs": m["outputs"], "refused": m["refused"]}
        quality.add(**_rounded(row, 3 if not args.json else 4))
        quality.target("read rate", m["read_rate"], 0.90, higher_is_better=True)
        quality.target("false-read rate", m["false_read_rate"], 0.03, higher_is_better=False)
        if lat:
            quality.target("p50 per photo", lat["p50_ms"], 10.0, higher_is_better=False, unit=" ms")
            quality.target("p95 per photo", lat["p95_ms"], 30.0, higher_is_better=False, unit=" ms")
        if args.curve:
            for threshold in CURVE_THRESHOLDS:
                m = evaluate_photos(photos, 25 if args.quick else None, [], args.reader, threshold)
                curve.add(threshold=threshold, read=round(m["read_rate"], 4), false=round(m["false_read_rate"], 4),
                          outputs=m["outputs"])  # fmt: skip
    else:
        print(f"no dev photos at {photos}: skipping the photo metrics", file=sys.stderr)
    if crops.is_dir():
        m = evaluate_crops(crops, 60 if args.quick else None, misses, args.reader)
        lat = m.pop("latency") or {}
        row = {"set": "ccpd-crops-dev", "n": m["crops"], "read": m["exact_rate"], "held": m["held_exact_rate"],
               "n_held": m["held_out"], "p50_ms": lat.get("p50_ms"), "p95_ms": lat.get("p95_ms")}  # fmt: skip
        quality.add(**_rounded(row, 3 if not args.json else 4))
        quality.target("held-out crops read exactly", m["held_exact_rate"], 0.95, higher_is_better=True)
    else:
        print(f"no plate crops at {crops}: skipping the crop metric", file=sys.stderr)
    for row in kernel_speedups(photos if photos.is_dir() else None, args.quick):
        kernels.add(**_rounded(row))
        kernels.target(f"{row['kernel']} speed-up", row["speedup"], 10.0, higher_is_better=True, unit="×")
    if args.misses:
        print("\n".join(misses), file=sys.stderr)
    if args.json:
        combined = Report("alpr_eval", quality.rows + curve.rows + kernels.rows, quality.targets + kernels.targets)
        return combined.emit(True)
    quality.emit(False)
    if curve.rows:
        curve.emit(False)
    return kernels.emit(False)


if __name__ == "__main__":
    raise SystemExit(main())
