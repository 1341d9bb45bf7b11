"""Character classification (字符识别): one plate character image → probabilities over the plate alphabet.

A small convolutional network (three 3×3 conv + max-pool stages, two dense layers) whose weights ship
as ``weights/chars.npz`` and are produced by ``python -m recognition_core.train``. The forward pass is
plain NumPy (im2col + one matrix product per layer), so no deep-learning framework is needed at run time.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import TypeVar

import cv2
import numpy as np

from crosspark.plate import ALPHABET
from recognition_core.reader import conv2d

#: (height, width) of a prepared glyph; a plate character is 45 × 90 mm, so 1 : 2.
GLYPH_SHAPE = (32, 16)
WEIGHTS_FILE = "chars.npz"
T = TypeVar("T")

_MIN_CONTRAST = 24.0


def _isolate_character(cut: np.ndarray) -> np.ndarray:
    """Crop a cut to the ink of the character at its centre, leaving out pieces of the neighbours.

    A plate character is at most half as wide as it is tall (45 × 90 mm) and its neighbours stand
    12 mm (new-energy: 9 mm) away, so ink components that fall outside a window 0.6 × the height
    wide around the central ink belong to a neighbour or the frame. Pieces of one character (川,
    the dots of 浙) all lie inside the window::

        | neighbour |  gap  |      character      |  gap  | neighbour |
                        [ ------ window 0.6 h ------ ]
    """
    h, w = cut.shape
    _, ink = cv2.threshold(cut, 0, 1, cv2.THRESH_BINARY | cv2.THRESH_OTSU)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(ink, connectivity=8)
    if count <= 1:
        return cut
    # a handful of components: plain Python over their statistics beats a dozen small NumPy calls
    boxes = [(x0, y0, x0 + bw, y0 + bh, area) for x0, y0, bw, bh, area in stats[1:].tolist()]
    # a frame line or the world beyond the plate: as wide as the cut, flat, on its top or bottom edge
    slab = [x1 - x0 >= 0.9 * w and y1 - y0 <= 0.45 * h and (y0 == 0 or y1 == h) for x0, y0, x1, y1, _ in boxes]
    if all(slab):
        return cut
    areas = [0 if flat else box[4] for box, flat in zip(boxes, slab, strict=True)]
    mid, reach, big = w / 2, max(1.0, 0.12 * w), max(areas)
    central = [
        x0 <= mid + reach and x1 >= mid - reach and area >= 0.15 * big
        for (x0, _, x1, _, _), area in zip(boxes, areas, strict=True)
    ]
    if not any(central):
        central = [area == big for area in areas]
    middle = [b for b, c in zip(boxes, central, strict=True) if c]
    cx = (min(b[0] for b in middle) + max(b[2] for b in middle)) / 2
    half = 0.3 * h
    keep = [
        not flat and (c or min(x1, cx + half) - max(x0, cx - half) >= 0.6 * (x1 - x0))
        for (x0, _, x1, _, _), c, flat in zip(boxes, central, slab, strict=True)
    ]
    kept = [b for b, k in zip(boxes, keep, strict=True) if k]
    rx0, rx1 = min(b[0] for b in kept), max(b[2] for b in kept)
    ry0, ry1 = min(b[1] for b in kept), max(b[3] for b in kept)
    out = cut
    if not all(keep):
        lookup = np.array([1, *keep], np.uint8)
        foreign = (ink == 1) & (lookup[labels] == 0)
        out = cut.copy()
        out[foreign] = np.minimum(out[foreign], 255 // 4)  # dim what belongs to the neighbours
    return out[ry0:ry1, rx0:rx1]


def prepare_glyph(char_gray: np.ndarray) -> np.ndarray:
    """Normalise a cut of ONE character (bright strokes on a dark background, any size, uint8 gray)
    to a ``GLYPH_SHAPE`` uint8 glyph: contrast stretched, cropped to the central character's ink
    (pieces of neighbours and of the frame left out), scaled with its aspect kept and centred on
    black. Training and inference both go through this function. A cut from a colour plate is its
    ``cv2.COLOR_BGR2GRAY``, inverted (255 - gray) where the characters are dark."""
    gray = np.asarray(char_gray)
    if gray.ndim != 2 or gray.size == 0:
        raise ValueError(f"expected a non-empty 2-D grayscale cut, got shape {gray.shape}")
    if gray.dtype != np.uint8:
        gray = np.clip(gray, 0, 255).astype(np.uint8)
    # the 5th and 98th percentile grey levels (a partial sort finds both; a full one is slower)
    ranks = (int(0.05 * (gray.size - 1)), int(0.98 * (gray.size - 1)))
    flat = np.partition(gray, ranks, axis=None)
    lo, hi = float(flat[ranks[0]]), float(flat[ranks[1]])
    span = max(hi - lo, _MIN_CONTRAST)
    stretched = np.clip((gray.astype(np.float32) - lo) * (255.0 / span), 0, 255).astype(np.uint8)

    if hi - lo >= _MIN_CONTRAST:
        stretched = _isolate_character(stretched)
    out_h, out_w = GLYPH_SHAPE
    h, w = stretched.shape
    scale = min(out_h / h, out_w / w)
    new_h = min(out_h, max(1, round(h * scale)))
    new_w = min(out_w, max(1, round(w * scale)))
    interp = cv2.INTER_AREA if scale < 1.0 else cv2.INTER_LINEAR
    resized = cv2.resize(stretched, (new_w, new_h), interpolation=interp)
    glyph = np.zeros(GLYPH_SHAPE, np.uint8)
    top, left = (out_h - new_h) // 2, (out_w - new_w) // 2
    glyph[top : top + new_h, left : left + new_w] = resized
    return glyph


class CharClassifier:
    """The plate-character network; ``predict_proba`` maps glyphs to class probabilities over ``ALPHABET``."""

    def __init__(self, params: dict[str, np.ndarray]) -> None:
        alphabet = str(params["alphabet"])
        if alphabet != ALPHABET:
            raise ValueError("classifier weights were trained for a different alphabet; retrain them")
        self.alphabet = alphabet
        self._convs = [
            (np.ascontiguousarray(params[f"conv{i}_w"], np.float32), np.asarray(params[f"conv{i}_b"], np.float32))
            for i in (1, 2, 3)
        ]
        self._fc1 = (np.ascontiguousarray(params["fc1_w"], np.float32), np.asarray(params["fc1_b"], np.float32))
        self._fc2 = (np.ascontiguousarray(params["fc2_w"], np.float32), np.asarray(params["fc2_b"], np.float32))

    @classmethod
    def from_npz(cls, path: object) -> CharClassifier:
        with np.load(path, allow_pickle=False) as data:  # type: ignore[arg-type]
            return cls({key: data[key] for key in data.files})

    def predict_proba(self, glyphs: np.ndarray) -> np.ndarray:
        """Probabilities, float32 of shape (N, len(ALPHABET)), for uint8 glyphs of shape (N, *GLYPH_SHAPE)."""
        glyphs = np.asarray(glyphs)
        if glyphs.ndim != 3 or glyphs.shape[1:] != GLYPH_SHAPE:
            raise ValueError(f"expected glyphs of shape (N, {GLYPH_SHAPE[0]}, {GLYPH_SHAPE[1]}), got {glyphs.shape}")
        n = glyphs.shape[0]
        if n == 0:
            return np.zeros((0, len(self.alphabet)), np.float32)
        x = glyphs.astype(np.float32).reshape(n, *GLYPH_SHAPE, 1)
        x *= 1.0 / 255.0
        x -= 0.5
        for w, b in self._convs:
            x = conv2d(x, w, b, 3, 3, 1, 1, relu=True, pool=(2, 2))  # 'same' 3×3, then 2×2 max-pool
        h = x.reshape(n, -1) @ self._fc1[0]
        h += self._fc1[1]
        np.maximum(h, 0.0, out=h)
        logits = h @ self._fc2[0]
        logits += self._fc2[1]
        logits -= logits.max(axis=1, keepdims=True)
        np.exp(logits, out=logits)
        logits /= logits.sum(axis=1, keepdims=True)
        return logits

    def classify(self, glyphs: np.ndarray) -> list[tuple[str, float]]:
        """The most probable character of each glyph, with its probability."""
        proba = self.predict_proba(glyphs)
        best = proba.argmax(axis=1)
        return [(self.alphabet[i], float(proba[k, i])) for k, i in enumerate(best)]


def _single_threaded_blas() -> None:
    """Run NumPy's BLAS on one thread, process-wide. The products here are small (a few million
    multiply-adds): a second BLAS thread saves little on an idle machine and, on a busy one, spins
    waiting for a core, turning a 0.3 ms batch into tens of milliseconds. Needs ``threadpoolctl``;
    without it, set ``OPENBLAS_NUM_THREADS=1`` in the environment."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return
    threadpool_limits(limits=1, user_api="blas")


def load_shipped(file_name: str, load: Callable[[Path], T], what: str, train_command: str) -> T:
    """``load`` of the weights file shipped in ``recognition_core/weights`` (pinning NumPy's BLAS
    to one thread first); a missing file names the command that makes it."""
    _single_threaded_blas()
    ref = resources.files("recognition_core").joinpath("weights", file_name)
    with resources.as_file(ref) as path:
        if not path.is_file():
            raise FileNotFoundError(f"{what} weights missing: {path}; run `{train_command}`")
        return load(path)


@functools.cache
def load_classifier() -> CharClassifier:
    """The shipped classifier (loaded once per process; pins NumPy's BLAS to one thread)."""
    return load_shipped(WEIGHTS_FILE, CharClassifier.from_npz, "classifier", "python -m recognition_core.train")
