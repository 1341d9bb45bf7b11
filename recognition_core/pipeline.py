"""Gate-camera plate reading (车牌识别): photo → located plates → characters → ``VehicleIdentity``.

``recognize`` runs the whole chain on a photo; ``recognize_crop`` on a plate that is already cut
out. Each candidate region from ``locate`` (best first, at most ``MAX_CANDIDATES``) is cut upright
out of the full-resolution photo; its colour decides whether the strokes are dark (then the cut is
inverted) and whether 7 or 8 characters are expected; ``segment`` cuts the characters, and cuts
whose layout fits poorly (``MIN_FIT``) go no further. The classifier gives per-character
probabilities and the grammar decoder the most probable valid plate, whose confidence is its
weakest character's. A candidate whose best plate is not confident enough (``MIN_CONFIDENCE``) is
no plate; one read is kept per plate. Decoding is not part of ``recognize`` (``read_image``).

Three readers turn a cut into characters: ``"segment"`` (cut into characters, then each classified,
as above), ``"sequence"`` (``recognition_core.reader``: the whole plate at once, no segmentation)
and ``"combined"``, both: in a photo, a plate both read alike takes the more confident read's
confidence, otherwise the segmenting read stands (as with ``"segment"`` alone; the sequence reader
alone misreads too often); a cut-out plate takes the more confident of the two reads. ``READER``
picks the default; the environment variable ``CROSSPARK_PLATE_READER`` overrides it.
"""

from __future__ import annotations

import io
import itertools
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass

import cv2
import numpy as np

from crosspark.identity import IdentitySource, PlateColor, VehicleIdentity
from crosspark.plate import PlateError, usual_colors
from recognition_core.classify import load_classifier, prepare_glyph
from recognition_core.color import is_dark_text, plate_color
from recognition_core.decode import best_plate
from recognition_core.locate import (
    CROP_MARGIN_X,
    CROP_MARGIN_Y,
    MAX_SIDE,
    ImageRefused,
    box_iou,
    check_image,
    locate,
    plate_crop,
)
from recognition_core.reader import character_centres, decode_columns, load_reader, prepare_plate
from recognition_core.segment import Segmentation, segmentations
from recognition_core.synth import char_layout

__all__ = ["MIN_CONFIDENCE", "READER", "ImageRefused", "Recognition", "read_image", "recognize", "recognize_crop"]

#: The default plate reader: "combined", "sequence" (whole plate, ``recognition_core.reader``) or "segment".
READER = "combined"
READERS = ("combined", "sequence", "segment")
#: Margin kept around the candidate's rectangle for the sequence reader (fractions of its sides).
SEQUENCE_MARGIN_X = 0.05
SEQUENCE_MARGIN_Y = 0.08
#: Whether the sequence reader's first character is cross-checked by the character classifier.
PROVINCE_CHECK = False

#: Reads below this confidence are dropped (a wrong plate is worse than none at a gate).
MIN_CONFIDENCE = 0.5
#: Cuts whose layout fits worse than this are not worth classifying: a plate's characters score
#: about 1.4, other texture mostly under 1 (``Segmentation.score``).
MIN_FIT = 1.0
#: A read less confident than this also tries the second-best placement of the characters.
SECOND_FIT_BELOW = 0.5
#: A read this confident is not read again from overlapping candidates.
SURE = 0.9
#: How many candidate regions of one photo are read at most.
MAX_CANDIDATES = 6
#: Largest encoded file accepted by ``read_image``.
MAX_FILE_BYTES = 64 * 1024 * 1024

_EIGHT_CHARACTER_COLOURS = frozenset({PlateColor.GREEN, PlateColor.YELLOW_GREEN})


@dataclass(frozen=True, slots=True)
class Recognition:
    """One plate read in a photo: the identity and its box ``(x, y, w, h)`` in the photo's pixels."""

    identity: VehicleIdentity
    box: tuple[int, int, int, int]


def _image_size(data: bytes) -> tuple[int, int] | None:
    """(width, height) from the file header, without decoding the pixels; None if unknown."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as img:
            return img.size
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError):
        return None


def read_image(source: str | os.PathLike[str] | bytes) -> np.ndarray:
    """Decode a photo (a path or the file's bytes) into BGR pixels.

    The header is checked before decoding, so an image larger than ``MAX_SIDE`` on a side is
    refused without allocating it. A truncated JPEG decodes as far as it goes. Raises
    ``ImageRefused`` for anything that is not a decodable image of an accepted size."""
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = bytes(source)
        name = "image"
    else:
        name = os.fspath(source)
        try:
            if os.path.getsize(name) > MAX_FILE_BYTES:
                raise ImageRefused(f"{name}: file larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
            with open(name, "rb") as fh:
                data = fh.read()
        except OSError as exc:
            raise ImageRefused(f"{name}: cannot read: {exc.strerror or exc}") from None
    if len(data) > MAX_FILE_BYTES:
        raise ImageRefused(f"{name}: file larger than {MAX_FILE_BYTES // (1024 * 1024)} MiB")
    size = _image_size(data)
    if size is None:
        raise ImageRefused(f"{name}: not a decodable image")
    if size[0] > MAX_SIDE or size[1] > MAX_SIDE:
        raise ImageRefused(f"{name}: image of {size[0]}×{size[1]} pixels is larger than {MAX_SIDE}×{MAX_SIDE}")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if image is None:
        image = _decode_truncated(data)
    if image is None:
        raise ImageRefused(f"{name}: not a decodable image")
    return check_image(image)


_TRUNCATED_LOCK = threading.Lock()


def _decode_truncated(data: bytes) -> np.ndarray | None:
    """Pillow's tolerant decode (a cut-off JPEG keeps the rows it has; the rest is gray)."""
    from PIL import Image, ImageFile

    with _TRUNCATED_LOCK:  # LOAD_TRUNCATED_IMAGES is a module-wide switch
        saved = ImageFile.LOAD_TRUNCATED_IMAGES
        ImageFile.LOAD_TRUNCATED_IMAGES = True
        try:
            with Image.open(io.BytesIO(data)) as img:
                rgb = np.asarray(img.convert("RGB"))
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError):
            return None
        finally:
            ImageFile.LOAD_TRUNCATED_IMAGES = saved
    return cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)


@dataclass(frozen=True, slots=True)
class _Read:
    plate: str
    color: PlateColor
    confidence: float


def _segment_as(gray: np.ndarray, dark_text: bool, n_chars: int) -> Iterator[Segmentation]:
    return segmentations(cv2.bitwise_not(gray) if dark_text else gray, n_chars, 2)


def reader_kind(reader: str | None = None) -> str:
    """The reader to use: ``reader``, else ``$CROSSPARK_PLATE_READER``, else ``READER``."""
    kind = reader or os.environ.get("CROSSPARK_PLATE_READER") or READER
    if kind not in READERS:
        raise ValueError(f"unknown plate reader {kind!r}; expected one of {', '.join(READERS)}")
    return kind


def _province_opinion(cut: np.ndarray, proba: np.ndarray, dark_text: bool) -> np.ndarray | None:
    """The character classifier's probabilities for the first character of a sequence read: the
    other characters' columns place the GA 36 layout on the cut, which gives the first one's box."""
    centres = character_centres(proba, cut.shape[1])
    n = len(centres)
    if n not in (7, 8):
        return None
    _, spans = char_layout(n)
    mm = np.array([(a + b) / 2 for a, b in spans])
    scale, offset = np.polyfit(mm[1:], centres[1:], 1)
    if scale <= 0:
        return None
    half = (spans[0][1] - spans[0][0]) / 2 * scale * 1.1
    x0, x1 = max(0, round(scale * mm[0] + offset - half)), min(cut.shape[1], round(scale * mm[0] + offset + half))
    h = cut.shape[0]
    if x1 - x0 < 3:
        return None
    gray = cv2.cvtColor(cut, cv2.COLOR_BGR2GRAY)[round(0.08 * h) : h - round(0.05 * h), x0:x1]
    if dark_text:
        gray = cv2.bitwise_not(gray)
    return load_classifier().predict_proba(prepare_glyph(gray)[None])[0]


def _read_sequence(crop: np.ndarray, tight: bool) -> _Read | None:
    """Read an upright plate cut with the sequence reader. ``tight``: the plate fills the cut (a
    cut-out plate); otherwise the cut carries ``plate_crop``'s margins, trimmed to
    ``SEQUENCE_MARGIN_*`` first, and the untrimmed cut is read too when the trimmed one is unsure.
    With ``PROVINCE_CHECK`` the character classifier's reading of the first character is
    multiplied into the reader's."""
    reader = load_reader()
    cuts = [crop]
    if not tight:
        h, w = crop.shape[:2]
        fx = (CROP_MARGIN_X - SEQUENCE_MARGIN_X) / (1 + 2 * CROP_MARGIN_X)
        fy = (CROP_MARGIN_Y - SEQUENCE_MARGIN_Y) / (1 + 2 * CROP_MARGIN_Y)
        x0, y0 = round(fx * w), round(fy * h)
        cuts.insert(0, crop[y0 : h - y0, x0 : w - x0])
    color, _ = plate_color(crop)
    best: tuple[str, float] | None = None
    for cut in cuts:
        proba = reader.column_proba(prepare_plate(cut)[None])[0]
        first = _province_opinion(cut, proba, is_dark_text(color)) if PROVINCE_CHECK else None
        read = decode_columns(proba, first)
        if read is not None and (best is None or read[1] > best[1]):
            best = read
        if best is not None and best[1] >= SURE:
            break
    if best is None:
        return None
    plate, confidence = best
    usual = usual_colors(plate)
    if len(plate) == 8 and color not in usual:  # the characters say new energy: green for sure
        color = next(iter(usual))
    return _Read(plate, color, confidence)


def _read_crop(crop: np.ndarray, hint: PlateColor | None = None) -> _Read | None:
    """Read one upright plate cut (BGR, the plate roughly filling it). ``hint``, the colour cue
    that found the plate, picks the first polarity and length to try; the plate's own colour
    (``plate_color``) is taken once its characters are found, and corrects them if it differs.
    When the best layout fit reads poorly, the next one (a character off) is read too."""
    gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    color: PlateColor | None = None
    if hint is None:  # no colour cue: the plate's own colour decides the polarity
        color, _ = plate_color(crop)
        hint = color
    dark_text = is_dark_text(hint)
    n_chars = 8 if hint in _EIGHT_CHARACTER_COLOURS else 7
    segs = _segment_as(gray, dark_text, n_chars)
    first = next(segs, None)
    if first is None:
        return None
    if color is None:
        color, _ = plate_color(crop)
    want_n = 8 if color in _EIGHT_CHARACTER_COLOURS else 7
    if is_dark_text(color) != dark_text or want_n != n_chars:
        segs = _segment_as(gray, is_dark_text(color), want_n)
    else:
        segs = itertools.chain([first], segs)
    best: tuple[str, float] | None = None
    for seg in segs:
        if seg.score < MIN_FIT:
            continue
        read = _classify(seg)
        if read is not None and (best is None or read[1] > best[1]):
            best = read
        if best is not None and best[1] >= SECOND_FIT_BELOW:
            break
    if best is None:
        return None
    return _Read(best[0], color, best[1])


def _classify(seg: Segmentation) -> tuple[str, float] | None:
    glyphs = np.stack([prepare_glyph(g) for g in seg.glyphs])
    try:
        return best_plate(load_classifier().predict_proba(glyphs))
    except PlateError:  # the decoder's best is not a plate after all: no read, never a crash
        return None


def _read_cut(kind: str, crop: np.ndarray, hint: PlateColor | None, tight: bool) -> _Read | None:
    """Read an upright plate cut with the reader ``kind`` (``tight``: the plate fills the cut)."""
    if kind == "sequence":
        return _read_sequence(crop, tight)
    segmented = _read_crop(crop, hint)
    if kind == "segment" or segmented is None:
        return segmented
    return _agreed(segmented, _read_sequence(crop, tight))


def _agreed(segmented: _Read, whole: _Read | None) -> _Read:
    """The combined reader's read: the segmenting read, as confident as the surer of the two
    readers when the sequence reader reads the same plate."""
    if whole is not None and whole.plate == segmented.plate:
        return max(whole, segmented, key=lambda r: r.confidence)
    return segmented


def _identity(read: _Read) -> VehicleIdentity:
    return VehicleIdentity(read.plate, read.color, IdentitySource.CAMERA, round(min(max(read.confidence, 0.0), 1.0), 4))


def recognize(
    image_bgr: np.ndarray, min_confidence: float = MIN_CONFIDENCE, reader: str | None = None
) -> list[Recognition]:
    """Every plate read in a BGR photo, most confident first. ``reader`` picks the plate reader
    (``reader_kind``). Raises ``ImageRefused`` for an array that is not an image of an accepted size."""
    kind = reader_kind(reader)
    image = check_image(image_bgr)
    found: list[tuple[_Read, tuple[int, int, int, int]]] = []
    read_boxes: list[np.ndarray] = []
    for cand in locate(image, max_candidates=MAX_CANDIDATES):
        bx, by, bw, bh = cand.box
        box = np.array([bx, by, bx + bw, by + bh], dtype=np.float64)
        # a candidate mostly inside a plate already read surely is that plate again
        if read_boxes and _coverage(box, np.array(read_boxes)).max() > 0.6:
            continue
        cut = plate_crop(image, cand)
        read = _read_cut(kind, cut, cand.color, tight=False)
        if read is not None and read.confidence >= min_confidence:
            # the candidate's own rectangle bounds the plate better than one drawn from the
            # characters' size (the layout fit leaves a few per cent of scale error)
            photo_box = _clip_box(cand.box, image.shape)
            found.append((read, photo_box))
            if read.confidence >= SURE:
                x, y, w, h = photo_box
                read_boxes.append(np.array([x, y, x + w, y + h], dtype=np.float64))
    found.sort(key=lambda rb: -rb[0].confidence)
    kept: list[Recognition] = []
    boxes: list[np.ndarray] = []
    for read, (x, y, w, h) in found:
        box = np.array([x, y, x + w, y + h], dtype=np.float64)
        # one plate, one output: drop overlapping reads and repeats of the same plate
        if any(r.identity.plate == read.plate for r in kept):
            continue
        if boxes and box_iou(box, np.array(boxes)).max() > 0.3:
            continue
        kept.append(Recognition(_identity(read), (x, y, w, h)))
        boxes.append(box)
    return kept


def recognize_crop(
    plate_bgr: np.ndarray, min_confidence: float = MIN_CONFIDENCE, reader: str | None = None
) -> Recognition | None:
    """Read an already cut-out plate (BGR); None when it does not read as a valid plate. ``reader``
    picks the plate reader (``reader_kind``)."""
    kind = reader_kind(reader)
    crop = check_image(plate_bgr)
    h, w = crop.shape[:2]
    height = 64
    scaled = cv2.resize(
        crop, (max(24, round(w * height / h)), height), interpolation=cv2.INTER_AREA if h > height else cv2.INTER_LINEAR
    )
    if kind == "sequence":
        read = _read_sequence(crop, tight=True)
    else:
        read = _read_crop(scaled)
        if kind == "combined":  # a cut-out plate is surely a plate: the surer reader's read
            whole = _read_sequence(crop, tight=True)
            read = max((r for r in (read, whole) if r is not None), key=lambda r: r.confidence, default=None)
    if read is None or read.confidence < min_confidence:
        return None
    return Recognition(_identity(read), (0, 0, w, h))


def _coverage(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Share of ``box`` (x0, y0, x1, y1) inside each row of ``others``."""
    iw = np.clip(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0, None)
    ih = np.clip(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0, None)
    return iw * ih / max((box[2] - box[0]) * (box[3] - box[1]), 1e-9)


def _clip_box(box: tuple[int, int, int, int], shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    x, y, w, h = box
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(shape[1], x + w), min(shape[0], y + h)
    return x0, y0, max(0, x1 - x0), max(0, y1 - y0)
