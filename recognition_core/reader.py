"""Segmentation-free plate reader (整牌识别): a whole plate crop → a sequence of character scores → text.

A small convolutional network (CRNN/LPRNet style, trained with CTC by ``recognition_core.train.reader``)
looks at the plate crop as one gray ``INPUT_SHAPE`` image and scores every alphabet character plus a
blank at each of ``width / 4`` columns. The best path (argmax per column, repeats merged, blanks
dropped) gives the characters; the scores at each character's strongest column become one row of
per-slot probabilities, which the grammar decoder (``decode.best_plate``) turns into the most
probable valid plate. No cutting into characters, so no cut across two of them. Inference is NumPy
only (im2col and one matrix product per layer, batch norm folded into the weights at export).
"""

from __future__ import annotations

import functools

import cv2
import numpy as np

from crosspark.plate import ALPHABET, PlateError
from recognition_core.decode import best_plate

__all__ = ["INPUT_SHAPE", "PlateReader", "conv2d", "load_reader", "prepare_plate"]

#: (height, width) of the gray input of weights that do not name theirs (``input_shape``).
INPUT_SHAPE = (24, 96)
WEIGHTS_FILE = "reader.npz"
BLANK = len(ALPHABET)


def prepare_plate(bgr_or_gray: np.ndarray, shape: tuple[int, int] = INPUT_SHAPE) -> np.ndarray:
    """A plate crop (BGR or gray, any size) as a network's uint8 gray input of ``shape`` (height,
    width; a reader's own is ``PlateReader.input_shape``)."""
    img = np.asarray(bgr_or_gray)
    if img.ndim == 3:
        img = cv2.cvtColor(img, cv2.COLOR_BGR2GRAY)
    h, w = shape
    interp = cv2.INTER_AREA if img.shape[0] > h else cv2.INTER_LINEAR
    return cv2.resize(img, (w, h), interpolation=interp)


def conv2d(
    x: np.ndarray,
    w: np.ndarray,
    b: np.ndarray,
    kh: int,
    kw: int,
    ph: int,
    pw: int,
    relu: bool,
    pool: tuple[int, int] = (1, 1),
) -> np.ndarray:
    """Convolution (stride 1, zero padding ``ph``, ``pw``) + bias (+ ReLU) on NHWC float32, then a
    max-pool by ``pool`` (``_pool``); ``w`` is (kh·kw·C, O) in (dy, dx, channel) order. The pool
    is taken before the bias and the ReLU: both are monotonic and the bias is the same for every
    pixel of a channel, so the result is the same, on a fraction of the pixels."""
    n, h, wd, c = x.shape
    if ph or pw:
        padded = np.zeros((n, h + 2 * ph, wd + 2 * pw, c), np.float32)
        padded[:, ph : ph + h, pw : pw + wd] = x
    else:
        padded = x
    oh, ow = h + 2 * ph - kh + 1, wd + 2 * pw - kw + 1
    if kh == 1 and kw == 1:
        cols = padded.reshape(n * oh * ow, c)
    else:
        cols4 = np.empty((n, oh, ow, kh * kw, c), np.float32)
        for k in range(kh * kw):
            dy, dx = divmod(k, kw)
            cols4[:, :, :, k] = padded[:, dy : dy + oh, dx : dx + ow]
        cols = cols4.reshape(n * oh * ow, kh * kw * c)
    y = (cols @ w).reshape(n, oh, ow, -1)
    if pool != (1, 1):
        y = _pool(y, *pool)
    y += b
    if relu:
        np.maximum(y, 0.0, out=y)
    return y


def _pool(x: np.ndarray, ph: int, pw: int) -> np.ndarray:
    """Max-pool NHWC by (ph, pw), dropping a ragged edge: the element-wise maximum of the ph·pw
    strided views (NumPy's reduction over the middle axes of a reshape is several times slower)."""
    h, w = x.shape[1] - x.shape[1] % ph, x.shape[2] - x.shape[2] % pw
    out = x[:, 0:h:ph, 0:w:pw].copy()
    for dy in range(ph):
        for dx in range(pw):
            if dy or dx:
                np.maximum(out, x[:, dy:h:ph, dx:w:pw], out=out)
    return out


class PlateReader:
    """The plate-reading network. ``layers`` in the weights file lists each layer as
    ``conv:kh:kw:pad_h:pad_w:relu`` or ``pool:ph:pw``; conv ``i`` has ``w{i}`` (kh·kw·C, O) and ``b{i}``;
    ``input_shape`` (height, width) is the gray input's size (``INPUT_SHAPE`` when absent)."""

    def __init__(self, params: dict[str, np.ndarray]) -> None:
        if str(params["alphabet"]) != ALPHABET:
            raise ValueError("reader weights were trained for a different alphabet; retrain them")
        shape = params.get("input_shape")
        self.input_shape: tuple[int, int] = INPUT_SHAPE if shape is None else (int(shape[0]), int(shape[1]))
        # a conv layer carries the pool that follows it, if any: ``conv2d`` takes it before the
        # bias and the ReLU; a pool after anything else stays a layer of its own
        self._layers: list[tuple[str, tuple[int, ...], np.ndarray | None, np.ndarray | None]] = []
        conv = 0
        for spec in str(params["layers"]).split(","):
            kind, *args = spec.split(":")
            nums = tuple(int(a) for a in args)
            if kind == "conv":
                conv += 1
                w = np.ascontiguousarray(params[f"w{conv}"], np.float32)
                b = np.asarray(params[f"b{conv}"], np.float32)
                self._layers.append((kind, (*nums, 1, 1), w, b))
            elif (
                kind == "pool" and self._layers and self._layers[-1][0] == "conv" and self._layers[-1][1][5:] == (1, 1)
            ):
                last, last_nums, last_w, last_b = self._layers[-1]
                self._layers[-1] = (last, (*last_nums[:5], *nums), last_w, last_b)
            else:
                self._layers.append((kind, nums, None, None))

    @classmethod
    def from_npz(cls, path: object) -> PlateReader:
        with np.load(path, allow_pickle=False) as data:  # type: ignore[arg-type]
            return cls({key: data[key] for key in data.files})

    def column_proba(self, plates: np.ndarray) -> np.ndarray:
        """Per-column probabilities, float32 (N, T, len(ALPHABET) + 1; the blank last), for uint8
        gray inputs of shape (N, *input_shape)."""
        plates = np.asarray(plates)
        if plates.ndim != 3 or plates.shape[1:] != self.input_shape:
            raise ValueError(
                f"expected plates of shape (N, {', '.join(map(str, self.input_shape))}), got {plates.shape}"
            )
        x = plates.astype(np.float32)[..., None]
        x *= 1.0 / 255.0
        x -= 0.5
        for kind, nums, w, b in self._layers:
            if kind == "conv":
                assert w is not None and b is not None
                kh, kw, ph, pw, relu, pool_h, pool_w = nums
                x = conv2d(x, w, b, kh, kw, ph, pw, relu=bool(relu), pool=(pool_h, pool_w))
            else:
                x = _pool(x, nums[0], nums[1])
        logits = x[:, 0]  # (N, T, classes): the height has collapsed to 1
        logits -= logits.max(axis=2, keepdims=True)
        np.exp(logits, out=logits)
        logits /= logits.sum(axis=2, keepdims=True)
        return logits

    def read(self, plate_crop: np.ndarray) -> tuple[str, float] | None:
        """The most probable valid plate in a crop (BGR or gray) and its confidence, or None."""
        return decode_columns(self.column_proba(self.prepare(plate_crop)[None])[0])

    def prepare(self, bgr_or_gray: np.ndarray) -> np.ndarray:
        """A plate crop as this network's input (``prepare_plate`` at ``input_shape``)."""
        return prepare_plate(bgr_or_gray, self.input_shape)


def character_centres(proba: np.ndarray, width: int) -> np.ndarray:
    """The x of each best-path character's strongest column in an input ``width`` pixels wide."""
    _, peaks = best_path(proba)
    return (np.asarray(peaks, np.float64) + 0.5) * width / proba.shape[0]


def best_path(proba: np.ndarray) -> tuple[str, list[int]]:
    """Greedy CTC decode of (T, classes) probabilities: the text and, per character, its strongest column."""
    best = proba.argmax(axis=1)
    chars: list[str] = []
    peaks: list[int] = []
    prev = BLANK
    for t, k in enumerate(best.tolist()):
        if k != BLANK:
            if k != prev:
                chars.append(ALPHABET[k])
                peaks.append(t)
            elif proba[t, k] > proba[peaks[-1], k]:
                peaks[-1] = t
        prev = k
    return "".join(chars), peaks


def column_rows(proba: np.ndarray, first: np.ndarray | None = None) -> np.ndarray | None:
    """Per-slot probabilities (n, len(ALPHABET)) of one plate's column probabilities (T, classes):
    each best-path character's strongest column, the blank left out, rows normalised; None when
    the best path is not 7 or 8 long. ``first``, a second opinion on the first character
    (probabilities over ``ALPHABET``), is multiplied into its slot."""
    _, peaks = best_path(proba)
    if len(peaks) not in (7, 8):
        return None
    rows = proba[peaks, :BLANK].astype(np.float64)
    if first is not None:
        rows[0] *= np.asarray(first, np.float64)
    rows /= np.maximum(rows.sum(axis=1, keepdims=True), 1e-12)
    return rows


def decode_columns(proba: np.ndarray, first: np.ndarray | None = None) -> tuple[str, float] | None:
    """The most probable valid plate for one plate's column probabilities (T, classes), with the
    weakest slot's probability as confidence; None when the best path is not 7 or 8 long
    (``column_rows``; ``first`` as there)."""
    rows = column_rows(proba, first)
    if rows is None:
        return None
    try:
        return best_plate(rows)
    except PlateError:
        return None


@functools.cache
def load_reader() -> PlateReader:
    """The shipped reader (loaded once per process; pins NumPy's BLAS to one thread)."""
    from recognition_core.classify import load_shipped

    return load_shipped(WEIGHTS_FILE, PlateReader.from_npz, "reader", "python -m recognition_core.train.reader")
