"""Character classifier speed: the NumPy forward pass of the shipped network per glyph batch, against
a baseline measured in the same run (OpenCV's kNN on raw glyph pixels, the classic EasyPR-style
classifier, fitted on the same synthetic glyphs). Also prints the classifier's agreement on them.

``python bench/recog_classify.py [--quick] [--json]``
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one core, as the recognition targets say


def _percentiles(fn, repeat: int) -> dict[str, float]:
    for _ in range(max(5, repeat // 20)):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    p50, p95, p99 = np.percentile(times, [50, 95, 99]) * 1e3
    return {"p50_ms": round(float(p50), 4), "p95_ms": round(float(p95), 4), "p99_ms": round(float(p99), 4)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/recog_classify.py", description=__doc__)
    parser.add_argument("--quick", action="store_true", help="a few seconds")
    parser.add_argument("--json", action="store_true", help="one JSON object on stdout")
    args = parser.parse_args(argv)

    import cv2

    from recognition_core.classify import load_classifier, prepare_glyph
    from recognition_core.train.data import synthetic_plate_glyphs

    cv2.setNumThreads(1)
    rng = np.random.default_rng(7)
    plates = 40 if args.quick else 300
    pairs = [pair for _ in range(plates) for pair in synthetic_plate_glyphs(rng)]
    glyphs = np.stack([g for g, _ in pairs])
    labels = np.array([c for _, c in pairs])
    clf = load_classifier()
    repeat = 200 if args.quick else 2000

    half = len(glyphs) // 2
    knn = cv2.ml.KNearest_create()
    knn.train(glyphs[:half].reshape(half, -1).astype(np.float32), cv2.ml.ROW_SAMPLE, labels[:half].astype(np.float32))

    results: dict[str, object] = {"glyphs": len(glyphs)}
    for batch in (1, 8, 64):
        x = glyphs[half : half + batch]
        ours = _percentiles(lambda x=x: clf.predict_proba(x), repeat)
        flat = x.reshape(len(x), -1).astype(np.float32)
        base = _percentiles(lambda flat=flat: knn.findNearest(flat, 3), max(20, repeat // 10))
        results[f"batch{batch}"] = {
            "cnn": ours,
            "knn_baseline": base,
            "speedup_p50": round(base["p50_ms"] / ours["p50_ms"], 2),
        }
    raw = np.random.default_rng(1).integers(0, 256, (24, 12), dtype=np.uint8)
    results["prepare_glyph"] = _percentiles(lambda: prepare_glyph(raw), repeat)
    test = glyphs[half:]
    cnn_acc = float((clf.predict_proba(test).argmax(axis=1) == labels[half:]).mean())
    _, knn_pred, _, _ = knn.findNearest(test.reshape(len(test), -1).astype(np.float32), 3)
    results["accuracy"] = {
        "cnn": round(cnn_acc, 4),
        "knn_baseline": round(float((knn_pred[:, 0] == labels[half:]).mean()), 4),
    }

    if args.json:
        print(json.dumps(results))
        return 0
    print(f"character classifier on {results['glyphs']} synthetic glyphs (one core)")
    for batch in (1, 8, 64):
        r = results[f"batch{batch}"]
        print(
            f"  batch {batch:>2}: CNN p50 {r['cnn']['p50_ms']:.3f} ms p95 {r['cnn']['p95_ms']:.3f} ms | "
            f"kNN baseline p50 {r['knn_baseline']['p50_ms']:.3f} ms | ×{r['speedup_p50']}"
        )
    print(f"  prepare_glyph p50 {results['prepare_glyph']['p50_ms'] * 1000:.1f} µs")
    print(f"  accuracy: CNN {results['accuracy']['cnn']:.2%}, kNN baseline {results['accuracy']['knn_baseline']:.2%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
