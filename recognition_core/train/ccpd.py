"""The CCPD dev crops (``shared/data/alpr/ccpd-crops-dev``): labelled from their file names, cut into
characters by fitting the GA 36 layout to the crop's ink projections (the crops are tight plates)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from crosspark.plate import is_valid
from recognition_core.synth import char_layout

CCPD_DIR = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "alpr" / "ccpd-crops-dev"


@dataclass(frozen=True, slots=True)
class Crop:
    name: str
    plate: str
    bgr: np.ndarray


def holdout(name: str, fraction: float = 0.3) -> bool:
    """Whether a crop belongs to the held-out part (a stable hash of its file name)."""
    digest = hashlib.sha256(name.encode()).digest()
    return digest[0] / 256.0 < fraction


def load_crops(directory: Path = CCPD_DIR) -> list[Crop]:
    """Every readable crop whose file name (less a ``_N`` suffix) is a valid 7-character plate."""
    crops = []
    for path in sorted(directory.glob("*.jpg")):
        plate = path.stem.split("_")[0]
        if len(plate) != 7 or not is_valid(plate):
            continue
        bgr = cv2.imdecode(np.fromfile(path, np.uint8), cv2.IMREAD_COLOR)
        if bgr is not None:
            crops.append(Crop(path.name, plate, bgr))
    return crops


def level(bgr: np.ndarray) -> np.ndarray:
    """Rotate a crop so its row of characters is level: a line through the centres of the
    character-sized ink components gives the tilt (CCPD crops are boxes around tilted plates)."""
    h, w = bgr.shape[:2]
    gray = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    _, ink = cv2.threshold(gray, 0, 1, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    _, _, stats, centres = cv2.connectedComponentsWithStats(ink, connectivity=8)
    heights, widths = stats[1:, cv2.CC_STAT_HEIGHT], stats[1:, cv2.CC_STAT_WIDTH]
    chars = (heights >= 0.35 * h) & (heights <= 0.95 * h) & (widths <= 0.3 * w)
    if chars.sum() < 3:
        return bgr
    xs, ys = centres[1:][chars].T
    angle = float(np.degrees(np.arctan(np.polyfit(xs, ys, 1)[0])))
    rotation = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
    return cv2.warpAffine(bgr, rotation, (w, h), borderMode=cv2.BORDER_REPLICATE)


def _longest_run(flags: np.ndarray) -> tuple[int, int] | None:
    best, start = None, None
    for i, flag in enumerate([*flags.tolist(), False]):
        if flag and start is None:
            start = i
        elif not flag and start is not None:
            if best is None or i - start > best[1] - best[0]:
                best = (start, i)
            start = None
    return best


def char_boxes(gray: np.ndarray, n: int = 7) -> np.ndarray:
    """(n, 4) boxes (x0, y0, x1, y1) of the characters of a tight plate crop with bright text."""
    h, w = gray.shape
    _, ink = cv2.threshold(gray, 0, 1, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    rows = ink[:, w // 10 : w - w // 10].mean(axis=1)
    band = _longest_run(rows > 0.18)
    y0, y1 = band if band and band[1] - band[0] >= h // 2 else (round(0.1 * h), round(0.9 * h))
    cols = ink[y0:y1].mean(axis=0)
    width_mm, spans = char_layout(n)
    mm = np.array(spans) / width_mm
    best_score, best = -np.inf, (1.0, 0.0)
    xs = np.arange(w)
    for scale in np.linspace(0.84, 1.04, 11):
        for shift in np.arange(-0.06, 0.061, 0.01) * w:
            edges = mm * scale * w + shift
            if edges[0, 0] < -0.03 * w or edges[-1, 1] > 1.03 * w:  # the plate lies inside its crop
                continue
            inside = np.zeros(w, bool)
            for left, right in edges:
                inside |= (xs >= left) & (xs < right)
            if inside.all() or not inside.any():
                continue
            score = cols[inside].mean() - cols[~inside].mean()
            if score > best_score:
                best_score, best = score, (scale, shift)
    scale, shift = best
    boxes = np.zeros((n, 4), np.int32)
    for i, (left, right) in enumerate(mm * scale * w + shift):
        boxes[i] = (max(0, int(np.floor(left))), y0, min(w, int(np.ceil(right))), y1)
    return boxes
