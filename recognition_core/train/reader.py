"""Train the segmentation-free plate reader: ``python -m recognition_core.train.reader [--plates N] [--minutes M]``.

Renders synthetic plates of every colour (tilted, sheared, in perspective, cut with uneven margins,
degraded like a camera) and plate-free cuts (empty text) in parallel processes
(``recognition_core.train.plates``), adds augmented copies of 70 % of the CCPD dev crops (the other
30 % are held out, the same split as the character classifier's), trains the network with CTC on a
GPU when PyTorch sees one (else on the CPU), folds batch norm into the convolutions and writes
``recognition_core/weights/reader.npz`` (plain NumPy arrays) and ``reader.json`` (held-out figures).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from crosspark.plate import ALPHABET
from recognition_core.reader import BLANK, PlateReader, decode_columns, prepare_plate
from recognition_core.train.__main__ import ensure_fonts
from recognition_core.train.ccpd import CCPD_DIR, holdout, load_crops
from recognition_core.train.plates import make_set, real_set

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
CLASS_OF = {ch: i for i, ch in enumerate(ALPHABET)}
#: (height, width) of the trained network's gray input; CCPD's crops are 24 × 94.
SHAPE = (24, 96)
#: (kind, out channels, kernel, padding, relu) of each layer; pools are ("pool", (ph, pw)). The input
#: leaves 24 columns: three per character and a blank between any two.
ARCH: list[tuple] = [
    ("conv", 16, (3, 3), (1, 1), True),
    ("pool", (2, 2)),
    ("conv", 32, (3, 3), (1, 1), True),
    ("pool", (2, 2)),
    ("conv", 64, (3, 3), (1, 1), True),
    ("pool", (2, 1)),
    ("conv", 96, (3, 3), (1, 1), True),
    ("conv", 128, (3, 1), (0, 0), True),  # the height (3) collapses: one feature vector per column
    ("conv", 128, (1, 3), (0, 1), True),  # neighbouring columns
    ("conv", len(ALPHABET) + 1, (1, 1), (0, 0), False),
]
#: Dropout before the classifying layer (the real crops are few: the network learns them by heart).
DROPOUT = 0.2


class ReaderNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for spec in ARCH:
            if spec[0] == "pool":
                layers.append(nn.MaxPool2d(spec[1]))
                continue
            _, c_out, k, pad, relu = spec
            layers.append(nn.Conv2d(c_in, c_out, k, padding=pad))
            if relu:
                layers += [nn.BatchNorm2d(c_out), nn.ReLU()]
            else:  # the classifying layer: dropout on its input
                layers.insert(len(layers) - 1, nn.Dropout(DROPOUT))
            c_in = c_out
        self.body = nn.Sequential(*layers)

    def forward(self, plates_u8: torch.Tensor) -> torch.Tensor:
        """Logits (N, T, classes) for uint8 plates (N, H, W)."""
        x = plates_u8.float().unsqueeze(1) / 255.0 - 0.5
        return self.body(x)[:, :, 0].permute(0, 2, 1)


def export_params(model: ReaderNet) -> dict[str, np.ndarray]:
    """The weights in ``PlateReader``'s layout (on the CPU, float32), batch norm folded into each
    convolution."""
    model.eval()
    params: dict[str, np.ndarray] = {"alphabet": np.array(ALPHABET), "input_shape": np.array(SHAPE, np.int32)}
    specs: list[str] = []
    mods = list(model.body)
    conv_i = 0
    with torch.no_grad():
        for i, m in enumerate(mods):
            if isinstance(m, nn.MaxPool2d):
                ph, pw = m.kernel_size if isinstance(m.kernel_size, tuple) else (m.kernel_size,) * 2
                specs.append(f"pool:{ph}:{pw}")
            elif isinstance(m, nn.Conv2d):
                w, b = m.weight.detach().float().cpu().clone(), m.bias.detach().float().cpu().clone()  # type: ignore[union-attr]
                nxt = mods[i + 1] if i + 1 < len(mods) else None
                bn = nxt if isinstance(nxt, nn.BatchNorm2d) else None
                if bn is not None:
                    assert bn.running_var is not None and bn.running_mean is not None
                    var, mean = bn.running_var.float().cpu(), bn.running_mean.float().cpu()
                    scale = bn.weight.detach().float().cpu() / torch.sqrt(var + bn.eps)
                    w = w * scale[:, None, None, None]
                    b = (b - mean) * scale + bn.bias.detach().float().cpu()
                conv_i += 1
                kh, kw = m.kernel_size
                ph, pw = m.padding if isinstance(m.padding, tuple) else (0, 0)
                params[f"w{conv_i}"] = w.permute(2, 3, 1, 0).reshape(-1, w.shape[0]).numpy().astype(np.float32)
                params[f"b{conv_i}"] = b.numpy().astype(np.float32)
                specs.append(f"conv:{kh}:{kw}:{ph}:{pw}:{int(bn is not None)}")
    params["layers"] = np.array(",".join(specs))
    return params


def load_params(model: ReaderNet, params: dict[str, np.ndarray], sample: torch.Tensor) -> None:
    """Start ``model`` from exported weights (``export_params``' layout, batch norm folded): each
    convolution takes its folded weights, and each batch norm is set, layer by layer on the
    ``sample`` plates, to the statistics of what reaches it with a scale and shift that undo them,
    so that it starts as the identity in training mode too (where it normalises by the batch)."""
    convs = [m for m in model.body if isinstance(m, nn.Conv2d)]
    if len(convs) != sum(1 for k in params if k.startswith("w")):
        raise ValueError("the weights were exported from another architecture")
    norms = [m for m in model.body if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for i, conv in enumerate(convs, start=1):
            o, c, kh, kw = conv.weight.shape
            w = torch.from_numpy(np.asarray(params[f"w{i}"], np.float32)).reshape(kh, kw, c, o).permute(3, 2, 0, 1)
            conv.weight.copy_(w)
            conv.bias.copy_(torch.from_numpy(np.asarray(params[f"b{i}"], np.float32)))  # type: ignore[union-attr]
        for bn in norms:  # the identity in evaluation mode first (but for epsilon)
            bn.reset_parameters()
        model.eval()
        for bn in norms:
            seen: list[torch.Tensor] = []
            hook = bn.register_forward_pre_hook(lambda _m, args, seen=seen: seen.append(args[0]))
            model(sample)
            hook.remove()
            x = seen[0]
            mean, var = x.mean(dim=(0, 2, 3)), x.var(dim=(0, 2, 3), unbiased=False)
            bn.running_mean.copy_(mean)  # type: ignore[union-attr]
            bn.running_var.copy_(var)  # type: ignore[union-attr]
            bn.weight.copy_((var + bn.eps).sqrt())
            bn.bias.copy_(mean)


def exact_rate(reader: PlateReader, plates: np.ndarray, texts: list[str]) -> float:
    """Share of ``plates`` read exactly (a plate-free cut counts when nothing is read)."""
    hits = 0
    for start in range(0, len(texts), 512):
        proba = reader.column_proba(plates[start : start + 512])
        for p, text in zip(proba, texts[start : start + 512], strict=True):
            read = decode_columns(p)
            hits += (read is None) if text == "" else (read is not None and read[0] == text)
    return hits / max(len(texts), 1)


def _lr(max_lr: float, frac: float) -> float:
    """Warm-up over the first 5 % of the time budget, then cosine to zero at its end."""
    return max_lr * (frac / 0.05 if frac < 0.05 else 0.5 * (1 + np.cos(np.pi * (frac - 0.05) / 0.95)))


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--plates", type=int, help="synthetic cuts to render (default 400000 on a GPU, 40000 on a CPU)")
    p.add_argument("--real-copies", type=int, default=30, help="augmented copies of each training crop")
    p.add_argument("--epochs", type=int, default=200, help="at most this many passes")
    p.add_argument("--minutes", type=float, help="stop training after this long (default 6 on a GPU, 30 on a CPU)")
    p.add_argument("--threads", type=int, default=2, help="torch threads on a CPU")
    p.add_argument("--workers", type=int, help="rendering processes (default: every CPU)")
    p.add_argument("--batch", type=int, help="batch size (default 512 on a GPU, 128 on a CPU)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--repaint", type=float, default=0.8, help="share of the CCPD copies whose province is painted over")
    p.add_argument("--cache", type=Path, help="keep the rendered synthetic cuts in this .npz and reuse them")
    p.add_argument("--init", type=Path, help="start from these exported weights (same architecture)")
    p.add_argument("--lr", type=float, help="peak learning rate (default 3e-3 on a GPU, 2e-3 on a CPU)")
    p.add_argument("--data", type=Path, default=CCPD_DIR, help="the ccpd-crops-dev folder (optional)")
    p.add_argument("--out", type=Path, default=WEIGHTS_DIR / "reader.npz")
    args = p.parse_args(argv)
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    gpu = device.type == "cuda"
    plates = args.plates or (400_000 if gpu else 40_000)
    minutes = args.minutes or (6.0 if gpu else 30.0)
    batch = args.batch or (512 if gpu else 128)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    ensure_fonts()
    began = time.monotonic()

    if args.cache and args.cache.is_file():
        with np.load(args.cache, allow_pickle=False) as cached:
            synth_x, test_x = cached["synth_x"], cached["test_x"]
            synth_y, test_y = [str(t) for t in cached["synth_y"]], [str(t) for t in cached["test_y"]]
    else:
        synth_x, synth_y = make_set(plates, args.seed, SHAPE, workers=args.workers)
        test_x, test_y = make_set(2000, args.seed + 1, SHAPE, workers=args.workers)
        if args.cache:
            np.savez(args.cache, synth_x=synth_x, synth_y=np.array(synth_y), test_x=test_x, test_y=np.array(test_y))
    crops = load_crops(args.data) if args.data.is_dir() else []
    train_crops = [c.bgr for c in crops if not holdout(c.name)]
    train_texts = [c.plate for c in crops if not holdout(c.name)]
    held = [c for c in crops if holdout(c.name)]
    real_x, real_y = real_set(train_crops, train_texts, args.real_copies, args.seed + 2, SHAPE, args.repaint)
    xs = np.concatenate([synth_x, real_x])
    ys = synth_y + real_y
    print(f"data: {len(synth_y)} synthetic ({synth_y.count('')} plate-free), {len(real_y)} real "
          f"({len(train_crops)} crops), {len(held)} held out; {time.monotonic() - began:.0f} s on {device}",
          file=sys.stderr, flush=True)  # fmt: skip

    # targets as one padded matrix on the device: CTC reads the first ``length`` of each row
    lengths = torch.tensor([len(t) for t in ys], dtype=torch.long)
    padded = torch.zeros((len(ys), 8), dtype=torch.long)
    for i, t in enumerate(ys):
        padded[i, : len(t)] = torch.tensor([CLASS_OF[ch] for ch in t], dtype=torch.long)
    x_all, padded, lengths = torch.from_numpy(xs).to(device), padded.to(device), lengths.to(device)
    model = ReaderNet()
    if args.init:
        with np.load(args.init, allow_pickle=False) as init:
            load_params(model, {k: init[k] for k in init.files}, torch.from_numpy(xs[:: max(1, len(xs) // 2048)]))
    model = model.to(device)
    steps_per_epoch = len(ys) // batch
    max_lr = args.lr or (3e-3 if gpu else 2e-3)
    opt = torch.optim.AdamW(model.parameters(), lr=max_lr, weight_decay=1e-4)
    ctc = nn.CTCLoss(blank=BLANK, zero_infinity=True)
    held_x = np.stack([prepare_plate(c.bgr, SHAPE) for c in held]) if held else None
    held_y = [c.plate for c in held]
    budget = minutes * 60
    # the learning rate follows the clock, so the schedule completes on a slow machine as on a fast one
    train_start = time.monotonic()
    epoch, done = 0, False
    while not done and epoch < args.epochs:
        epoch += 1
        model.train()
        order = torch.randperm(len(ys), device=device)
        total = torch.zeros((), device=device)
        steps = 0
        for s in range(steps_per_epoch):
            frac = (time.monotonic() - train_start) / budget
            if frac >= 1.0:
                done = True
                break
            for group in opt.param_groups:
                group["lr"] = _lr(max_lr, frac)
            idx = order[s * batch : (s + 1) * batch]
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=gpu):
                logits = model(x_all[idx])
            log_probs = logits.float().log_softmax(2).permute(1, 0, 2)  # T, N, C
            loss = ctc(log_probs, padded[idx], torch.full((len(idx),), log_probs.shape[0], dtype=torch.long,
                       device=device), lengths[idx])  # fmt: skip
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach()
            steps += 1
        reader = PlateReader(export_params(model))
        held_rate = exact_rate(reader, held_x, held_y) if held_x is not None else 0.0
        synth_rate = exact_rate(reader, test_x, test_y)
        elapsed = time.monotonic() - train_start
        print(f"epoch {epoch}: loss {float(total) / max(steps, 1):.3f}, synthetic exact {synth_rate:.3f}, "
              f"held-out ccpd exact {held_rate:.3f}; {elapsed:.0f} s", file=sys.stderr, flush=True)  # fmt: skip

    params = export_params(model)
    reader = PlateReader(params)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **params)  # type: ignore[arg-type]
    negatives = [i for i, t in enumerate(test_y) if t == ""]
    figures = {
        "synthetic_exact": round(exact_rate(reader, test_x, test_y), 4),
        "plate_free_rejected": round(exact_rate(reader, test_x[negatives], [""] * len(negatives)), 4),
        "held_out_ccpd_exact": round(exact_rate(reader, held_x, held_y), 4) if held_x is not None else None,
        "held_out_crops": len(held),
        "synthetic_cuts": len(synth_y),
        "real_training_copies": len(real_y),
        "epochs_run": epoch,
        "device": str(device),
        "minutes": round((time.monotonic() - began) / 60, 1),
        "command": "python -m recognition_core.train.reader " + " ".join(argv if argv is not None else sys.argv[1:]),
    }  # fmt: skip
    args.out.with_suffix(".json").write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(figures), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
