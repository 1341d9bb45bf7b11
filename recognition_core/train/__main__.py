"""Train the character classifier: ``python -m recognition_core.train [--plates N] [--epochs E] [--quick]``.

Renders synthetic plates (installing fonts when missing), adds augmented cuts of the CCPD dev crops
(70 % of them; the other 30 % are held out), trains the network with PyTorch on the CPU, writes
``recognition_core/weights/chars.npz`` and a ``chars.json`` of held-out figures.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

from crosspark.plate import ALPHABET, DIGITS, LETTERS, PROVINCES, SPECIAL_SUFFIXES
from recognition_core.classify import GLYPH_SHAPE, CharClassifier
from recognition_core.decode import best_plate
from recognition_core.synth import FontMissingError, available_fonts
from recognition_core.train.ccpd import CCPD_DIR, holdout, load_crops
from recognition_core.train.data import crop_glyphs, real_crop_glyphs, synthetic_plate_glyphs

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
GROUPS = {"province": PROVINCES, "letter": LETTERS, "digit": DIGITS, "special": SPECIAL_SUFFIXES}

console = Console(stderr=True)


def ensure_fonts() -> None:
    try:
        available_fonts("cjk"), available_fonts("latin")
    except FontMissingError:
        console.print("installing fonts (recognition_core/train/fonts.sh)")
        subprocess.run(["bash", str(Path(__file__).with_name("fonts.sh"))], check=True)
        available_fonts.cache_clear()
        available_fonts("cjk"), available_fonts("latin")


def _progress() -> Progress:
    return Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        TextColumn("{task.fields[note]}"),
        console=console,
    )


def synthetic_set(plates: int, seed: int, progress: Progress, label: str) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    glyphs, labels = [], []
    task = progress.add_task(label, total=plates, note="")
    for _ in range(plates):
        for glyph, cls in synthetic_plate_glyphs(rng):
            glyphs.append(glyph)
            labels.append(cls)
        progress.advance(task)
    return np.stack(glyphs), np.array(labels, np.int64)


def real_set(
    crops: list,
    copies: int,
    seed: int,
    progress: Progress,
    teacher: CharClassifier | None = None,
    province_copies: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Augmented cuts of the CCPD training crops. With a ``teacher``, the characters of a crop whose
    plain cut it gives under 5 % for the label are left out: the layout fit missed them, and a cut
    showing half of two characters would teach the wrong thing."""
    rng = np.random.default_rng(seed)
    glyphs, labels = [np.zeros((0, *GLYPH_SHAPE), np.uint8)], []
    dropped = 0
    task = progress.add_task("ccpd crops", total=len(crops), note="")
    for crop in crops:
        keep = np.ones(len(crop.plate), bool)
        if teacher is not None:
            plain, plate = crop_glyphs(crop)
            proba = teacher.predict_proba(plain)
            keep = proba[np.arange(len(plate)), [ALPHABET.index(c) for c in plate]] >= 0.05
            dropped += int((~keep).sum())
        for glyph, cls in real_crop_glyphs(crop, rng, copies, keep.tolist(), province_copies):
            glyphs.append(glyph[None])
            labels.append(cls)
        progress.advance(task)
    if teacher is not None:
        progress.console.print(f"teacher left out {dropped} of {len(crops) * 7} CCPD character cuts")
    return np.concatenate(glyphs), np.array(labels, np.int64)


def group_accuracy(pred: np.ndarray, labels: np.ndarray) -> dict[str, dict[str, float]]:
    out = {}
    for group, chars in GROUPS.items():
        mask = np.isin(labels, [ALPHABET.index(c) for c in chars])
        if mask.any():
            out[group] = {"n": int(mask.sum()), "accuracy": round(float((pred[mask] == labels[mask]).mean()), 4)}
    out["all"] = {"n": int(labels.size), "accuracy": round(float((pred == labels).mean()), 4)}
    return out


def evaluate(clf: CharClassifier, synth_test: tuple[np.ndarray, np.ndarray], held: list) -> dict:
    report: dict = {}
    pred = clf.predict_proba(synth_test[0]).argmax(axis=1)
    report["synthetic"] = group_accuracy(pred, synth_test[1])
    if held:
        glyphs, labels, exact_argmax, exact_decode = [], [], 0, 0
        for crop in held:
            g, plate = crop_glyphs(crop)
            proba = clf.predict_proba(g)
            exact_argmax += "".join(ALPHABET[i] for i in proba.argmax(axis=1)) == plate
            decoded = best_plate(proba)
            exact_decode += decoded is not None and decoded[0] == plate
            glyphs.append(g)
            labels += [ALPHABET.index(c) for c in plate]
        pred = clf.predict_proba(np.concatenate(glyphs)).argmax(axis=1)
        report["ccpd_holdout"] = {
            "plates": len(held),
            "characters": group_accuracy(pred, np.array(labels)),
            "plate_exact_argmax": round(exact_argmax / len(held), 4),
            "plate_exact_decoded": round(exact_decode / len(held), 4),
        }
    batch = synth_test[0][:8]
    for _ in range(50):
        clf.predict_proba(batch)
    times = []
    for _ in range(500):
        t0 = time.perf_counter()
        clf.predict_proba(batch)
        times.append(time.perf_counter() - t0)
    report["batch8_ms"] = {
        "p50": round(float(np.percentile(times, 50)) * 1e3, 3),
        "p95": round(float(np.percentile(times, 95)) * 1e3, 3),
    }
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m recognition_core.train", description=__doc__)
    parser.add_argument("--plates", type=int, default=24000, help="synthetic training plates")
    parser.add_argument("--real-copies", type=int, default=20, help="augmented copies of each CCPD training crop")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=CCPD_DIR, help="the ccpd-crops-dev folder (optional)")
    parser.add_argument("--out", type=Path, default=WEIGHTS_DIR / "chars.npz")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (more threads crawl on a busy machine)")
    parser.add_argument("--quick", action="store_true", help="a tiny run to check the pipeline")
    parser.add_argument("--cache", type=Path, help="keep the synthetic glyphs in this .npz and reuse them")
    parser.add_argument(
        "--teacher", type=Path, help="weights of an earlier run: CCPD cuts it finds implausible are left out"
    )
    parser.add_argument(
        "--province-copies", type=int, default=2, help="copies of each CCPD crop whose province character is kept"
    )
    parser.add_argument("--init", type=Path, help="start from these weights (an earlier run's chars.npz)")
    parser.add_argument("--lr", type=float, default=2e-3, help="peak learning rate")
    args = parser.parse_args(argv)
    if args.quick:
        args.plates, args.real_copies, args.epochs = 300, 2, 1

    import torch

    from recognition_core.train.model import CharNet, export_npz, import_npz

    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    ensure_fonts()
    started = time.time()
    crops = load_crops(args.data) if args.data.is_dir() else []
    if not crops:
        console.print(f"[yellow]no CCPD crops at {args.data}: training on synthetic plates only")
    train_crops = [c for c in crops if not holdout(c.name)]
    held = [c for c in crops if holdout(c.name)]

    with _progress() as progress:
        if args.cache and args.cache.is_file():
            with np.load(args.cache) as cached:
                x_syn, y_syn, test = cached["x_syn"], cached["y_syn"], (cached["x_test"], cached["y_test"])
        else:
            x_syn, y_syn = synthetic_set(args.plates, args.seed, progress, "synthetic plates")
            test = synthetic_set(max(100, args.plates // 40), args.seed + 1, progress, "synthetic test plates")
            if args.cache:
                np.savez(args.cache, x_syn=x_syn, y_syn=y_syn, x_test=test[0], y_test=test[1])
        teacher = CharClassifier.from_npz(args.teacher) if args.teacher else None
        x_real, y_real = real_set(train_crops, args.real_copies, args.seed + 2, progress, teacher, args.province_copies)
        x, y = np.concatenate([x_syn, x_real]), np.concatenate([y_syn, y_real])
        console.print(f"{len(x_syn)} synthetic + {len(x_real)} real training glyphs; {len(held)} crops held out")

        model = CharNet()
        if args.init:
            import_npz(model, args.init)
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        batch = 256
        steps = args.epochs * ((len(x) + batch - 1) // batch)
        opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps, pct_start=0.15)
        loss_fn = torch.nn.CrossEntropyLoss(label_smoothing=0.05)
        task = progress.add_task("training", total=steps, note="")
        for epoch in range(args.epochs):
            model.train()
            order = torch.randperm(len(x))
            total, seen = 0.0, 0
            for i in range(0, len(x), batch):
                idx = order[i : i + batch]
                loss = loss_fn(model(xt[idx]), yt[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                sched.step()
                total += loss.item() * len(idx)
                seen += len(idx)
                progress.update(task, advance=1, note=f"epoch {epoch + 1}/{args.epochs} loss {total / seen:.3f}")
            progress.console.print(f"epoch {epoch + 1}/{args.epochs}: loss {total / seen:.4f}")

    export_npz(model, args.out)
    clf = CharClassifier.from_npz(args.out)
    report = evaluate(clf, test, held)
    report["training"] = {
        "synthetic_plates": args.plates,
        "synthetic_glyphs": len(x_syn),
        "real_glyphs": len(x_real),
        "ccpd_train_crops": len(train_crops),
        "epochs": args.epochs,
        "teacher": args.teacher.name if args.teacher else None,
        "init": args.init.name if args.init else None,
        "province_copies": args.province_copies,
        "command": "python -m recognition_core.train " + " ".join(argv if argv is not None else sys.argv[1:]),
        "seed": args.seed,
        "minutes": round((time.time() - started) / 60, 1),
    }
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=1, ensure_ascii=False) + "\n")
    console.print_json(json.dumps(report, ensure_ascii=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
