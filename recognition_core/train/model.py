"""The character network in PyTorch (training only) and its export to the NumPy weights file that
``recognition_core.classify.CharClassifier`` runs. No batch norm: on this tiny network it costs a
third of the training time on a CPU and buys nothing that AdamW does not."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from crosspark.plate import ALPHABET

CHANNELS = (16, 32, 64)
HIDDEN = 256


class CharNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        c_in = 1
        for c_out in CHANNELS:
            layers += [nn.Conv2d(c_in, c_out, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2)]
            c_in = c_out
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Dropout(0.25),
            nn.Linear(CHANNELS[-1] * 4 * 2, HIDDEN),
            nn.ReLU(),
            nn.Dropout(0.25),
            nn.Linear(HIDDEN, len(ALPHABET)),
        )

    def forward(self, glyphs_u8: torch.Tensor) -> torch.Tensor:
        x = glyphs_u8.float().unsqueeze(1) / 255.0 - 0.5
        return self.head(self.features(x))


def export_npz(model: CharNet, path: Path) -> None:
    """Write the weights in the layout ``CharClassifier`` reads: conv (9·C, O) in (dy, dx, C) order,
    dense (in, out) with the input in NHWC flatten order."""
    model.eval()
    params: dict[str, np.ndarray] = {"alphabet": np.array(ALPHABET)}
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    with torch.no_grad():
        for i, conv in enumerate(convs, start=1):
            w = conv.weight  # O, C, 3, 3
            params[f"conv{i}_w"] = w.permute(2, 3, 1, 0).reshape(-1, w.shape[0]).numpy().astype(np.float32)
            assert conv.bias is not None
            params[f"conv{i}_b"] = conv.bias.numpy().astype(np.float32)
        fc1, fc2 = (m for m in model.head if isinstance(m, nn.Linear))
        c = CHANNELS[-1]
        w1 = fc1.weight.reshape(HIDDEN, c, 4, 2).permute(2, 3, 1, 0).reshape(-1, HIDDEN)  # (H·W·C, hidden)
        params["fc1_w"] = w1.numpy().astype(np.float32)
        params["fc1_b"] = fc1.bias.numpy().astype(np.float32)
        params["fc2_w"] = fc2.weight.T.contiguous().numpy().astype(np.float32)
        params["fc2_b"] = fc2.bias.numpy().astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **params)  # type: ignore[arg-type]


def import_npz(model: CharNet, path: Path) -> None:
    """Load weights written by ``export_npz`` into ``model`` (to go on training from them)."""
    with np.load(path, allow_pickle=False) as data:
        params = {k: data[k] for k in data.files}
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    fc1, fc2 = (m for m in model.head if isinstance(m, nn.Linear))
    c = CHANNELS[-1]
    with torch.no_grad():
        for i, conv in enumerate(convs, start=1):
            o, ci = conv.weight.shape[:2]
            w = torch.from_numpy(params[f"conv{i}_w"]).reshape(3, 3, ci, o).permute(3, 2, 0, 1)
            conv.weight.copy_(w)
            conv.bias.copy_(torch.from_numpy(params[f"conv{i}_b"]))  # type: ignore[union-attr]
        w1 = torch.from_numpy(params["fc1_w"]).reshape(4, 2, c, HIDDEN).permute(3, 2, 0, 1).reshape(HIDDEN, -1)
        fc1.weight.copy_(w1)
        fc1.bias.copy_(torch.from_numpy(params["fc1_b"]))
        fc2.weight.copy_(torch.from_numpy(params["fc2_w"]).T)
        fc2.bias.copy_(torch.from_numpy(params["fc2_b"]))
