"""Character classifier: time of the shipped network's NumPy forward pass per glyph batch against a
baseline measured in the same run (the same network with the textbook im2col, a strided window
view reshaped into patches), and accuracy against nearest-template matching on raw pixels (the
classic approach, with half of the same synthetic glyphs as templates).

``python bench/recog_classify.py [--quick] [--json]``
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view


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

    from recognition_core.classify import load_classifier, prepare_glyph
    from recognition_core.train.data import synthetic_plate_glyphs

    rng = np.random.default_rng(7)
    plates = 40 if args.quick else 300
    pairs = [pair for _ in range(plates) for pair in synthetic_plate_glyphs(rng)]
    glyphs = np.stack([g for g, _ in pairs])
    labels = np.array([c for _, c in pairs])
    clf = load_classifier()
    repeat = 200 if args.quick else 2000

    half = len(glyphs) // 2
    templates = glyphs[:half].reshape(half, -1).astype(np.float32)
    template_norms = (templates**2).sum(axis=1)

    def nearest(batch: np.ndarray) -> np.ndarray:
        flat = batch.reshape(len(batch), -1).astype(np.float32)
        return labels[(template_norms - 2.0 * flat @ templates.T).argmin(axis=1)]

    def naive_forward(batch: np.ndarray) -> np.ndarray:
        x = batch.astype(np.float32)[..., None] / 255.0 - 0.5
        for w, b in clf._convs:
            n, h, wd, c = x.shape
            padded = np.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))
            patches = sliding_window_view(padded, (3, 3), axis=(1, 2)).transpose(0, 1, 2, 4, 5, 3)
            y = np.maximum(patches.reshape(n * h * wd, 9 * c) @ w + b, 0).reshape(n, h, wd, -1)
            x = y.reshape(n, h // 2, 2, wd // 2, 2, -1).max(axis=(2, 4))
        hidden = np.maximum(x.reshape(len(x), -1) @ clf._fc1[0] + clf._fc1[1], 0)
        logits = hidden @ clf._fc2[0] + clf._fc2[1]
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)

    results: dict[str, object] = {"glyphs": len(glyphs)}
    assert np.allclose(naive_forward(glyphs[:8]), clf.predict_proba(glyphs[:8]), atol=1e-5)
    for batch in (1, 8, 64):
        x = glyphs[half : half + batch]
        ours = _percentiles(lambda x=x: clf.predict_proba(x), repeat)
        base = _percentiles(lambda x=x: naive_forward(x), repeat)
        results[f"batch{batch}"] = {
            "cnn": ours,
            "naive_im2col_baseline": base,
            "speedup_p50": round(base["p50_ms"] / ours["p50_ms"], 2),
        }
    raw = np.random.default_rng(1).integers(0, 256, (24, 12), dtype=np.uint8)
    results["prepare_glyph"] = _percentiles(lambda: prepare_glyph(raw), repeat)
    test = glyphs[half:]
    cnn_acc = float((clf.predict_proba(test).argmax(axis=1) == labels[half:]).mean())
    nn_acc = float((nearest(test) == labels[half:]).mean())
    results["accuracy"] = {"cnn": round(cnn_acc, 4), "nearest_template_baseline": round(nn_acc, 4)}

    if args.json:
        print(json.dumps(results))
        return 0
    print(f"character classifier on {results['glyphs']} synthetic glyphs (one core)")
    for batch in (1, 8, 64):
        r = results[f"batch{batch}"]
        print(
            f"  batch {batch:>2}: CNN p50 {r['cnn']['p50_ms']:.3f} ms p95 {r['cnn']['p95_ms']:.3f} ms | "
            f"naive im2col p50 {r['naive_im2col_baseline']['p50_ms']:.3f} ms | ×{r['speedup_p50']}"
        )
    print(f"  prepare_glyph p50 {results['prepare_glyph']['p50_ms'] * 1000:.1f} µs")
    acc = results["accuracy"]
    print(f"  accuracy: CNN {acc['cnn']:.2%}, template baseline {acc['nearest_template_baseline']:.2%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
