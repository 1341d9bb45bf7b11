"""Train the segmentation-free plate reader: ``python -m recognition_core.train.reader [--plates N] [--minutes M]``.

Renders synthetic plates of every colour (tilted, sheared, cut with uneven margins, degraded like a
camera), adds augmented copies of 70 % of the CCPD dev crops (the other 30 % are held out, the same
split as the character classifier's), trains the network with CTC on the CPU, folds batch norm into
the convolutions and writes ``recognition_core/weights/reader.npz`` and ``reader.json`` (held-out figures).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import torch
from torch import nn

from crosspark.plate import ALPHABET
from recognition_core.reader import BLANK, PlateReader, decode_columns, prepare_plate
from recognition_core.synth import font_count, random_plate, render_plate
from recognition_core.train.__main__ import ensure_fonts
from recognition_core.train.ccpd import CCPD_DIR, holdout, load_crops
from recognition_core.train.data import COLOR_WEIGHTS, _degrade, training_text

WEIGHTS_DIR = Path(__file__).resolve().parents[1] / "weights"
CLASS_OF = {ch: i for i, ch in enumerate(ALPHABET)}
#: (kind, out channels, kernel, padding, relu) of each layer; pools are ("pool", (ph, pw)).
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
    """The weights in ``PlateReader``'s layout, batch norm folded into each convolution."""
    model.eval()
    params: dict[str, np.ndarray] = {"alphabet": np.array(ALPHABET)}
    specs: list[str] = []
    mods = list(model.body)
    conv_i = 0
    with torch.no_grad():
        for i, m in enumerate(mods):
            if isinstance(m, nn.MaxPool2d):
                ph, pw = m.kernel_size if isinstance(m.kernel_size, tuple) else (m.kernel_size,) * 2
                specs.append(f"pool:{ph}:{pw}")
            elif isinstance(m, nn.Conv2d):
                w, b = m.weight.clone(), m.bias.clone()  # type: ignore[union-attr]
                nxt = mods[i + 1] if i + 1 < len(mods) else None
                bn = nxt if isinstance(nxt, nn.BatchNorm2d) else None
                if bn is not None:
                    assert bn.running_var is not None and bn.running_mean is not None
                    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
                    w = w * scale[:, None, None, None]
                    b = (b - bn.running_mean) * scale + bn.bias
                conv_i += 1
                kh, kw = m.kernel_size
                ph, pw = m.padding if isinstance(m.padding, tuple) else (0, 0)
                params[f"w{conv_i}"] = w.permute(2, 3, 1, 0).reshape(-1, w.shape[0]).numpy().astype(np.float32)
                params[f"b{conv_i}"] = b.numpy().astype(np.float32)
                specs.append(f"conv:{kh}:{kw}:{ph}:{pw}:{int(bn is not None)}")
    params["layers"] = np.array(",".join(specs))
    return params


# --- data ---------------------------------------------------------------------------------------


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    bg = np.empty((h, w, 3), np.float32)
    bg[:] = rng.uniform(0, 255, 3)
    bg += rng.normal(0, rng.uniform(2, 25), (h, w, 3)).astype(np.float32)
    for _ in range(int(rng.integers(0, 3))):  # edges of lamps, bumpers, frames
        y = int(rng.integers(h))
        cv2.line(bg, (0, y), (w, y + int(rng.integers(-5, 6))), tuple(float(v) for v in rng.uniform(0, 255, 3)), 2)
    return bg


def synthetic_plate(rng: np.random.Generator) -> tuple[np.ndarray, str]:
    """One rendered plate, tilted and sheared, cut with uneven margins, degraded; input-sized gray."""
    colors = list(COLOR_WEIGHTS)
    weights = np.array(list(COLOR_WEIGHTS.values()))
    color = colors[rng.choice(len(colors), p=weights / weights.sum())]
    if rng.random() < 0.6:
        text, color = random_plate(rng, color)
    else:  # every character in every slot it may stand in, valid or not
        text = training_text(rng, 8 if color.value in ("green", "yellow_green") else 7)
    fonts = (int(rng.integers(font_count("cjk"))), int(rng.integers(font_count("latin"))))
    plate = render_plate(
        text, color, px_per_mm=float(rng.uniform(0.2, 0.5)), rng=rng, fonts=fonts, stroke=int(rng.integers(-3, 6))
    )
    ph, pw = plate.image.shape[:2]
    # output cut: the plate plus margins in [-4 %, +14 %] of its size on each side
    ml, mr = rng.uniform(-0.04, 0.14, 2) * pw
    mt, mb = rng.uniform(-0.06, 0.2, 2) * ph
    out_w, out_h = round(pw + ml + mr), round(ph + mt + mb)
    src = np.array([[0, 0], [pw, 0], [pw, ph], [0, ph]], np.float32)
    dst = src + np.array([ml, mt], np.float32)
    dst += rng.normal(0, 0.015, (4, 2)).astype(np.float32) * [pw, ph]
    angle, shear = rng.uniform(-6, 6), rng.uniform(-0.2, 0.2)
    affine = cv2.getRotationMatrix2D((out_w / 2, out_h / 2), angle, 1.0)
    affine[0, 1] += shear
    affine[0, 2] -= shear * out_h / 2
    dst = (dst @ affine[:, :2].T + affine[:, 2]).astype(np.float32)
    matrix = cv2.getPerspectiveTransform(src, dst)
    img = cv2.warpPerspective(plate.image.astype(np.float32), matrix, (out_w, out_h), flags=cv2.INTER_LINEAR)
    mask = cv2.warpPerspective(np.ones((ph, pw), np.float32), matrix, (out_w, out_h), flags=cv2.INTER_LINEAR)
    img = img * mask[..., None] + _background(rng, out_h, out_w) * (1 - mask[..., None])
    return prepare_plate(_degrade(img, rng)), text


def real_plate(bgr: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """An augmented copy of a CCPD crop: small rotation, scale and shift, then camera degradation."""
    h, w = bgr.shape[:2]
    m = np.asarray(cv2.getRotationMatrix2D((w / 2, h / 2), rng.uniform(-5, 5), rng.uniform(0.9, 1.08)), np.float64)
    m[:, 2] += rng.uniform(-0.04, 0.04, 2) * np.array([w, h], np.float64)
    img = cv2.warpAffine(bgr.astype(np.float32), m, (w, h), borderMode=cv2.BORDER_REPLICATE)
    return prepare_plate(_degrade(img, rng))


def synthetic_set(n: int, seed: int) -> tuple[np.ndarray, list[str]]:
    rng = np.random.default_rng(seed)
    imgs, texts = [], []
    start = time.monotonic()
    for i in range(n):
        img, text = synthetic_plate(rng)
        imgs.append(img)
        texts.append(text)
        if (i + 1) % 5000 == 0:
            print(f"  rendered {i + 1}/{n} ({time.monotonic() - start:.0f} s)", file=sys.stderr, flush=True)
    return np.stack(imgs), texts


def exact_rate(reader: PlateReader, plates: np.ndarray, texts: list[str]) -> float:
    proba = reader.column_proba(plates)
    hits = 0
    for p, text in zip(proba, texts, strict=True):
        read = decode_columns(p)
        hits += read is not None and read[0] == text
    return hits / max(len(texts), 1)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--plates", type=int, default=28000, help="synthetic plates to render")
    p.add_argument("--real-copies", type=int, default=30, help="augmented copies of each training crop")
    p.add_argument("--epochs", type=int, default=100, help="at most this many passes")
    p.add_argument("--minutes", type=float, default=11.0, help="stop training after this long")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", type=Path, default=WEIGHTS_DIR / "reader.npz")
    args = p.parse_args(argv)
    torch.manual_seed(args.seed)
    torch.set_num_threads(args.threads)
    ensure_fonts()
    began = time.monotonic()

    synth_x, synth_y = synthetic_set(args.plates, args.seed)
    test_x, test_y = synthetic_set(1000, args.seed + 1)
    crops = load_crops(CCPD_DIR) if CCPD_DIR.is_dir() else []
    train_crops = [c for c in crops if not holdout(c.name)]
    held = [c for c in crops if holdout(c.name)]
    rng = np.random.default_rng(args.seed + 2)
    real_y = [c.plate for c in train_crops] * args.real_copies

    def real_set() -> np.ndarray:
        """The training crops once as they are, then ``real_copies - 1`` fresh augmented copies."""
        imgs = [prepare_plate(c.bgr) for c in train_crops]
        imgs += [real_plate(c.bgr, rng) for _ in range(args.real_copies - 1) for c in train_crops]
        return np.stack(imgs)

    xs = np.concatenate([synth_x, real_set()]) if real_y else synth_x
    ys = synth_y + real_y
    print(f"data: {len(synth_y)} synthetic, {len(real_y)} real ({len(train_crops)} crops), "
          f"{len(held)} held out; {time.monotonic() - began:.0f} s", file=sys.stderr)  # fmt: skip

    targets = [torch.tensor([CLASS_OF[ch] for ch in t], dtype=torch.long) for t in ys]
    x_all = torch.from_numpy(xs)
    model = ReaderNet()
    batch = 128
    steps_per_epoch = len(ys) // batch
    max_lr = 3e-3
    opt = torch.optim.AdamW(model.parameters(), lr=max_lr, weight_decay=1e-4)
    ctc = nn.CTCLoss(blank=BLANK, zero_infinity=True)
    held_x = np.stack([prepare_plate(c.bgr) for c in held]) if held else None
    held_y = [c.plate for c in held]
    budget = args.minutes * 60
    # the learning rate follows the clock (warm-up, then cosine to zero at the time budget), so the
    # schedule completes on a slow or busy machine as on a fast one
    train_start = time.monotonic()
    epoch, done = 0, False
    while not done and epoch < args.epochs:
        epoch += 1
        if epoch > 1 and real_y:  # new augmented copies of the real crops every pass
            x_all[len(synth_y) :] = torch.from_numpy(real_set())
        model.train()
        order = torch.randperm(len(ys))
        total, steps = 0.0, 0
        for s in range(steps_per_epoch):
            frac = (time.monotonic() - train_start) / budget
            if frac >= 1.0:
                done = True
                break
            for group in opt.param_groups:
                group["lr"] = max_lr * (
                    frac / 0.08 if frac < 0.08 else 0.5 * (1 + np.cos(np.pi * (frac - 0.08) / 0.92))
                )
            idx = order[s * batch : (s + 1) * batch]
            log_probs = model(x_all[idx]).log_softmax(2).permute(1, 0, 2)  # T, N, C
            tgt = [targets[i] for i in idx.tolist()]
            loss = ctc(
                log_probs,
                torch.cat(tgt),
                torch.full((len(idx),), log_probs.shape[0], dtype=torch.long),
                torch.tensor([len(t) for t in tgt], dtype=torch.long),
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item()
            steps += 1
        reader = PlateReader(export_params(model))
        held_rate = exact_rate(reader, held_x, held_y) if held_x is not None else 0.0
        synth_rate = exact_rate(reader, test_x, test_y)
        elapsed = time.monotonic() - train_start
        print(f"epoch {epoch}: loss {total / max(steps, 1):.3f}, synthetic exact {synth_rate:.3f}, "
              f"held-out ccpd exact {held_rate:.3f}; {elapsed:.0f} s", file=sys.stderr, flush=True)  # fmt: skip

    params = export_params(model)
    reader = PlateReader(params)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(args.out, **params)  # type: ignore[arg-type]
    figures = {
        "synthetic_exact": round(exact_rate(reader, test_x, test_y), 4),
        "held_out_ccpd_exact": round(exact_rate(reader, held_x, held_y), 4) if held_x is not None else None,
        "held_out_crops": len(held),
        "synthetic_plates": len(synth_y),
        "real_training_copies": len(real_y),
        "epochs_run": epoch,
        "minutes": round((time.monotonic() - began) / 60, 1),
    }  # fmt: skip
    args.out.with_suffix(".json").write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(figures), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
