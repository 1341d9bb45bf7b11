"""Gate-camera plate reading (车牌识别): photo → located plates → characters → ``VehicleIdentity``.

``recognize`` runs the whole chain on a photo; ``recognize_crop`` on a plate that is already cut
out. Each candidate region from ``locate`` (best first, at most ``MAX_CANDIDATES``) is cut upright
out of the full-resolution photo. Decoding is not part of ``recognize`` (``read_image``).

Two readers turn a cut into per-slot character probabilities, which the grammar decoder turns into
the most probable valid plate, as confident as its weakest slot:

* ``"sequence"`` (``recognition_core.reader``): the whole cut at once, no segmentation; all the
  candidates of a photo go through it in one batch. It is trained to read nothing where there is
  no plate, so it also tells plates from the rest.
* ``"segment"``: the cut's colour decides whether the strokes are dark (then the cut is inverted)
  and whether 7 or 8 characters are expected; ``segment`` cuts the characters (cuts whose layout
  fits poorly, ``MIN_FIT``, go no further) and the character classifier reads each.
* ``"combined"`` (the default, ``READER``): the segmenting reader reads the cuts in which the
  sequence reader reads a plate, and the two readers' probabilities are multiplied slot by slot
  (two independent opinions, ``_fused``): reads they agree on grow surer, a slot they dispute ends
  as unsure as the product leaves it, and a read that only one of them makes is discounted.

Reads below ``MIN_CONFIDENCE`` are dropped (a wrong plate is worse than none at a gate); one read
is kept per plate. The environment variable ``CROSSPARK_PLATE_READER`` overrides ``READER``.
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
from recognition_core.reader import column_rows, load_reader
from recognition_core.segment import Segmentation, segmentations

__all__ = [
    "CROP_MIN_CONFIDENCE",
    "MIN_CONFIDENCE",
    "READER",
    "ImageRefused",
    "Recognition",
    "read_image",
    "recognize",
    "recognize_crop",
]

#: The default plate reader: "combined", "sequence" (whole plate, ``recognition_core.reader``) or "segment".
READER = "combined"
READERS = ("combined", "sequence", "segment")
#: Margins (fractions of the candidate's length and height) of the sequence reader's looks at a
#: candidate: the first decides whether it reads as a plate, the others are read where it does
#: (``_sequence_reads``). On the 154 located dev plates, one look at (0.05, 0.08) read 101 right,
#: these four averaged 117 (the same look and the whole ``plate_crop`` cut: 104).
SEQUENCE_LOOKS = ((0.05, 0.08), (0.0, 0.0), (0.02, 0.04), (0.08, 0.12))

#: Reads of a photo below this confidence are dropped (a wrong plate is worse than none at a
#: gate): on the dev photos, 0.5 lets through four times as many false reads as 0.8 for 6 % more
#: plates read.
MIN_CONFIDENCE = 0.8
#: The same for a cut-out plate (``recognize_crop``): it is surely a plate, only its reading may be wrong.
CROP_MIN_CONFIDENCE = 0.5
#: Cuts whose layout fits worse than this are not worth classifying: a plate's characters score
#: about 1.4, other texture mostly under 1 (``Segmentation.score``).
MIN_FIT = 1.0
#: A read less confident than this also tries the second-best placement of the characters.
SECOND_FIT_BELOW = 0.5
#: Whether the combined reader leaves out cuts in which the sequence reader reads no plate.
SEQUENCE_GATES = True
#: The combined reader's confidence in a read that only one of its two readers makes.
ALONE_DISCOUNT = 0.7
#: Two reads whose boxes overlap more than this (IoU) are of one plate: ``recognize`` keeps the surer.
COVERED_IOU = 0.3
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
    #: the reader's per-slot probabilities (n, len(ALPHABET)) behind ``plate``
    rows: np.ndarray | None = None


def _segment_as(gray: np.ndarray, dark_text: bool, n_chars: int) -> Iterator[Segmentation]:
    return segmentations(cv2.bitwise_not(gray) if dark_text else gray, n_chars, 2)


def reader_kind(reader: str | None = None) -> str:
    """The reader to use: ``reader``, else ``$CROSSPARK_PLATE_READER``, else ``READER``."""
    kind = reader or os.environ.get("CROSSPARK_PLATE_READER") or READER
    if kind not in READERS:
        raise ValueError(f"unknown plate reader {kind!r}; expected one of {', '.join(READERS)}")
    return kind


def _decoded(rows: np.ndarray | None) -> tuple[str, float, np.ndarray] | None:
    """The grammar's best plate for per-slot probabilities, its confidence and the rows."""
    if rows is None:
        return None
    try:
        read = best_plate(rows)
    except PlateError:  # the decoder's best is not a plate after all: no read, never a crash
        return None
    return None if read is None else (read[0], read[1], rows)


def _trimmed(crop: np.ndarray, margin_x: float, margin_y: float) -> np.ndarray:
    """A ``plate_crop`` cut with its margins trimmed to ``margin_x`` and ``margin_y`` (fractions of
    the candidate's sides; 0 leaves the candidate's own rectangle)."""
    h, w = crop.shape[:2]
    fx = (CROP_MARGIN_X - margin_x) / (1 + 2 * CROP_MARGIN_X)
    fy = (CROP_MARGIN_Y - margin_y) / (1 + 2 * CROP_MARGIN_Y)
    x0, y0 = round(fx * w), round(fy * h)
    return crop[y0 : h - y0, x0 : w - x0]


def _cut_color(cut: np.ndarray, tight: bool) -> PlateColor:
    """The plate colour of a cut (``plate_color``), looked at inside the candidate's own rectangle
    unless the plate fills the cut (``tight``): the margins show the car around the plate, and a
    white or dark car body there outvoted the plate's own colour (on the dev photos, 9 of 154
    located plates were given the wrong colour with the margins, 4 without)."""
    return plate_color(cut if tight else _trimmed(cut, 0.0, 0.0))[0]


def _sequence_reads(cuts: list[np.ndarray], tight: bool) -> list[_Read | None]:
    """Read upright plate cuts with the sequence reader, all in one batch. ``tight``: the plate
    fills each cut (a cut-out plate); otherwise a cut carries ``plate_crop``'s margins and is read
    trimmed to the first of ``SEQUENCE_LOOKS``; where that reads as a plate, the cut is read again
    at the other margins (a second batch), and the per-slot probabilities of the looks that read
    as many characters as most of them did are averaged: the reader's slips depend on where the
    plate sits in its input, so several looks at one plate disagree less on what is there than
    on what is not. The colour of a cut (``_cut_color``) is looked at only where a plate is read."""
    if not cuts:
        return []
    reader = load_reader()
    first = cuts if tight else [_trimmed(cut, *SEQUENCE_LOOKS[0]) for cut in cuts]
    proba = reader.column_proba(np.stack([reader.prepare(cut) for cut in first]))
    looked: list[list[np.ndarray]] = []
    best: list[tuple[str, float, np.ndarray] | None] = []
    for p in proba:
        rows = column_rows(p)
        looked.append([] if rows is None else [rows])
        best.append(_decoded(rows))
    read = [] if tight else [i for i, b in enumerate(best) if b is not None]
    again = [(i, margins) for i in read for margins in SEQUENCE_LOOKS[1:]]
    if again:
        proba = reader.column_proba(np.stack([reader.prepare(_trimmed(cuts[i], *margins)) for i, margins in again]))
        for (i, _), p in zip(again, proba, strict=True):
            rows = column_rows(p)
            if rows is not None:
                looked[i].append(rows)
        for i in read:
            lengths = [len(rows) for rows in looked[i]]
            common = max(lengths, key=lengths.count)  # a tie goes to the first look's length
            averaged = _decoded(np.mean([rows for rows in looked[i] if len(rows) == common], axis=0))
            best[i] = averaged or best[i]
    reads: list[_Read | None] = []
    for b, cut in zip(best, cuts, strict=True):
        if b is None:
            reads.append(None)
            continue
        plate, confidence, rows = b
        color = _cut_color(cut, tight)
        usual = usual_colors(plate)
        if len(plate) == 8 and color not in usual:  # the characters say new energy: green for sure
            color = next(iter(usual))
        reads.append(_Read(plate, color, confidence, rows))
    return reads


def _read_sequence(crop: np.ndarray, tight: bool) -> _Read | None:
    """Read one upright plate cut with the sequence reader (``_sequence_reads``)."""
    return _sequence_reads([crop], tight)[0]


def _read_crop(
    crop: np.ndarray, hint: PlateColor | None = None, color: PlateColor | None = None, tight: bool = True
) -> _Read | None:
    """Read one upright plate cut (BGR, the plate roughly filling it; ``tight``: the cut is the
    plate, else it carries ``plate_crop``'s margins). The plate's own colour, ``color`` when the
    caller has it, decides the polarity of the strokes and whether 7 or 8 characters are
    expected. Without it, ``hint``, the colour cue that found the plate, picks the first polarity
    and length to try, and the plate's colour (``_cut_color``) is taken once its characters are
    found, and corrects them if it differs. When the best layout fit reads poorly, the next one
    (a character off) is read too."""
    gray = cv2.cvtColor(crop, cv2.COLOR_BGR2GRAY)
    if color is not None:  # the colour is known: no cut in a polarity it would overrule
        hint = color
    elif hint is None:  # no colour cue: the plate's own colour decides the polarity
        color = _cut_color(crop, tight)
        hint = color
    dark_text = is_dark_text(hint)
    n_chars = 8 if hint in _EIGHT_CHARACTER_COLOURS else 7
    segs = _segment_as(gray, dark_text, n_chars)
    first = next(segs, None)
    if first is None:
        return None
    if color is None:
        color = _cut_color(crop, tight)
    want_n = 8 if color in _EIGHT_CHARACTER_COLOURS else 7
    if is_dark_text(color) != dark_text or want_n != n_chars:
        segs = _segment_as(gray, is_dark_text(color), want_n)
    else:
        segs = itertools.chain([first], segs)
    best: tuple[str, float, np.ndarray] | None = None
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
    return _Read(best[0], color, best[1], best[2])


def _classify(seg: Segmentation) -> tuple[str, float, np.ndarray] | None:
    glyphs = np.stack([prepare_glyph(g) for g in seg.glyphs])
    return _decoded(load_classifier().predict_proba(glyphs).astype(np.float64))


def _read_cuts(
    kind: str,
    cuts: list[np.ndarray],
    hints: list[PlateColor | None],
    tight: bool,
    boxes: list[np.ndarray] | None = None,
    covered_at: float = 1.0,
) -> list[_Read | None]:
    """Read upright plate cuts with the reader ``kind`` (``tight``: the plate fills each cut;
    ``hints``: the colour cues that found them). The combined reader runs the segmenting reader
    only on cuts the sequence reader reads as a plate (it is trained to read nothing elsewhere),
    and fuses the two reads (``_fused``); with ``boxes`` (x0, y0, x1, y1 of each cut's
    candidate) it skips the cuts covered by a read already at least ``covered_at`` confident
    (``_combined_reads``)."""
    if kind == "segment":
        reads = [_read_crop(cut, hint, tight=tight) for cut, hint in zip(cuts, hints, strict=True)]
    else:
        reads = _sequence_reads(cuts, tight)
    if kind == "combined":
        reads = _combined_reads(cuts, hints, reads, boxes, covered_at, tight)
    return reads


def _combined_reads(
    cuts: list[np.ndarray],
    hints: list[PlateColor | None],
    wholes: list[_Read | None],
    boxes: list[np.ndarray] | None,
    covered_at: float,
    tight: bool,
) -> list[_Read | None]:
    """The combined reader's reads of ``cuts`` (``tight`` as in ``_read_crop``), given the
    sequence reader's (``wholes``). The segmenting reader (a layout fit and a classifier batch per
    cut, about a quarter of a photo's time) takes the cuts surest first, and skips a cut whose box
    overlaps (``COVERED_IOU``) that of a read already ``covered_at`` confident: ``recognize`` keeps
    one read per plate, so a second read of a plate already read surely is mostly work thrown away
    (it could only replace the first by being surer still: on the dev photos no plate read
    changes, one box does)."""
    reads: list[_Read | None] = [None] * len(cuts)
    surety = [-1.0 if whole is None else whole.confidence for whole in wholes]
    order = sorted(range(len(cuts)), key=lambda i: -surety[i])
    sure: list[np.ndarray] = []
    for i in order:
        whole = wholes[i]
        if whole is None and SEQUENCE_GATES:
            continue
        if boxes is not None and sure and box_iou(boxes[i], np.array(sure)).max() > COVERED_IOU:
            continue
        read = _fused(_read_crop(cuts[i], hints[i], whole.color if whole else None, tight), whole)
        reads[i] = read
        if boxes is not None and read is not None and read.confidence >= covered_at:
            sure.append(boxes[i])
    return reads


def _read_cut(kind: str, crop: np.ndarray, hint: PlateColor | None, tight: bool) -> _Read | None:
    """Read one upright plate cut with the reader ``kind`` (``_read_cuts``)."""
    return _read_cuts(kind, [crop], [hint], tight)[0]


def _fused(segmented: _Read | None, whole: _Read | None, alone_discount: float = ALONE_DISCOUNT) -> _Read | None:
    """The combined reader's read. Where both readers place the same number of characters, their
    per-slot probabilities are multiplied (two independent opinions) and the grammar decodes the
    product: agreeing reads grow surer, a slot they disagree on ends as unsure as the weaker
    opinion leaves it. In a slot where their best characters differ, no character ends surer than
    the surer of the two readers made it: normalising the product would otherwise turn two weak,
    conflicting opinions into a confident one (on the dev photos, a 1 read as 1 at 0.75 by one
    reader and as J at 0.34 by the other came out J at 0.92; the cap costs one right read whose
    province only one reader backed, at 0.67). Otherwise the surer read stands, at
    ``alone_discount`` (nothing confirms it)."""
    if segmented is None or whole is None:
        alone = segmented or whole
        if alone is None:
            return None
        return _Read(alone.plate, alone.color, alone.confidence * alone_discount, alone.rows)
    if segmented.rows is not None and whole.rows is not None and segmented.rows.shape == whole.rows.shape:
        product = segmented.rows * whole.rows
        product /= np.maximum(product.sum(axis=1, keepdims=True), 1e-300)
        disputed = segmented.rows.argmax(axis=1) != whole.rows.argmax(axis=1)
        product[disputed] = np.minimum(product[disputed], np.maximum(segmented.rows, whole.rows)[disputed])
        read = _decoded(product)
        if read is not None:
            color = whole.color if len(read[0]) == 8 else segmented.color
            return _Read(read[0], color, read[1], product)
    surer = max(segmented, whole, key=lambda r: r.confidence)
    return _Read(surer.plate, surer.color, surer.confidence * alone_discount, surer.rows)


def _identity(read: _Read) -> VehicleIdentity:
    return VehicleIdentity(read.plate, read.color, IdentitySource.CAMERA, round(min(max(read.confidence, 0.0), 1.0), 4))


def recognize(
    image_bgr: np.ndarray, min_confidence: float = MIN_CONFIDENCE, reader: str | None = None
) -> list[Recognition]:
    """Every plate read in a BGR photo, most confident first. ``reader`` picks the plate reader
    (``reader_kind``). Raises ``ImageRefused`` for an array that is not an image of an accepted size."""
    kind = reader_kind(reader)
    image = check_image(image_bgr)
    cands = locate(image, max_candidates=MAX_CANDIDATES)
    # the candidate's own rectangle bounds the plate better than one drawn from the characters'
    # size (the layout fit leaves a few per cent of scale error)
    clipped = [_clip_box(cand.box, image.shape) for cand in cands]
    corners = [np.array([x, y, x + w, y + h], dtype=np.float64) for x, y, w, h in clipped]
    cuts = [plate_crop(image, cand) for cand in cands]
    reads = _read_cuts(kind, cuts, [cand.color for cand in cands], False, corners, min_confidence)
    found = [
        (read, box, corner)
        for read, box, corner in zip(reads, clipped, corners, strict=True)
        if read is not None and read.confidence >= min_confidence
    ]
    found.sort(key=lambda rb: -rb[0].confidence)
    kept: list[Recognition] = []
    boxes: list[np.ndarray] = []
    for read, (x, y, w, h), box in found:
        # one plate, one output: drop overlapping reads and repeats of the same plate
        if any(r.identity.plate == read.plate for r in kept):
            continue
        if boxes and box_iou(box, np.array(boxes)).max() > COVERED_IOU:
            continue
        kept.append(Recognition(_identity(read), (x, y, w, h)))
        boxes.append(box)
    return kept


def recognize_crop(
    plate_bgr: np.ndarray, min_confidence: float = CROP_MIN_CONFIDENCE, reader: str | None = None
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
        if kind == "combined":  # a cut-out plate is surely a plate: a read of one reader alone stands
            read = _fused(read, _read_sequence(crop, tight=True), alone_discount=1.0)
    if read is None or read.confidence < min_confidence:
        return None
    return Recognition(_identity(read), (0, 0, w, h))


def _clip_box(box: tuple[int, int, int, int], shape: tuple[int, ...]) -> tuple[int, int, int, int]:
    x, y, w, h = box
    x0, y0 = max(0, x), max(0, y)
    x1, y1 = min(shape[1], x + w), min(shape[0], y + h)
    return x0, y0, max(0, x1 - x0), max(0, y1 - y0)
