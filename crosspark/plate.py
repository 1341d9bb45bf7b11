"""Plate numbers: normalisation and the GA 36 grammar, used by every part of crosspark.

A plate is a province abbreviation, an issuing-authority letter, then five characters (regular
plates, where the last may be one of 学 警 挂 港 澳 领 使) or six (new-energy plates: ``D``/``F``
first for small vehicles, last for large ones). Letters never include ``I`` or ``O``.
"""

from __future__ import annotations

import re
import unicodedata

from crosspark.identity import PlateColor

PROVINCES = "京津沪渝冀豫云辽黑湘皖鲁新苏浙赣鄂桂甘晋蒙陕吉闽贵粤青藏川宁琼"
LETTERS = "ABCDEFGHJKLMNPQRSTUVWXYZ"  # no I, no O
DIGITS = "0123456789"
SPECIAL_SUFFIXES = "学警挂港澳领使"
NEW_ENERGY_MARKS = "DF"
#: Hong Kong and Macau cross-border plates (black) are issued by Guangdong's 粤Z office only.
CROSS_BORDER_SUFFIXES = "港澳"
CROSS_BORDER_PREFIX = "粤Z"
#: Every character that can appear on a plate, in a fixed order (the classifier's alphabet).
ALPHABET = PROVINCES + LETTERS + DIGITS + SPECIAL_SUFFIXES

_STRIP = str.maketrans("", "", " \t\u3000·.-\u2022\u30fb\u2027\uff0e\uff0d")
_ALNUM = LETTERS + DIGITS
_PROVINCE_SET = frozenset(PROVINCES)
_LETTER_SET = frozenset(LETTERS)
_ALNUM_SET = frozenset(_ALNUM)
_SMALL_NEW_ENERGY = re.compile(r"[DF][A-HJ-NP-Z0-9][0-9]{4}")
_LARGE_NEW_ENERGY = re.compile(r"[0-9]{5}[DF]")

#: Longest input accepted before normalisation; anything longer is not a plate.
MAX_RAW_LENGTH = 32


class PlateError(ValueError):
    """A plate that breaks the grammar. ``rule`` names the broken rule (a stable code)."""

    def __init__(self, plate: str, rule: str, message: str) -> None:
        super().__init__(f"plate {plate!r}: {message}")
        self.plate = plate
        self.rule = rule


def normalize(raw: str) -> str:
    """Strip separators, fold full-width to half-width, upper-case, and read ``O``/``I`` as
    ``0``/``1`` after the second character. The result may still be invalid: see ``validate``."""
    if len(raw) > MAX_RAW_LENGTH:
        raise PlateError(raw[:MAX_RAW_LENGTH] + "…", "length", f"longer than {MAX_RAW_LENGTH} characters")
    text = unicodedata.normalize("NFKC", raw).translate(_STRIP).upper()
    head, tail = text[:2], text[2:]
    return head + tail.replace("O", "0").replace("I", "1")


def validate(plate: str) -> None:
    """Raise ``PlateError`` naming the rule ``plate`` (already normalised) breaks.

    Rules (stable codes in ``PlateError.rule``): ``empty``, ``province``, ``length``, ``authority``,
    ``serial``, ``suffix``, ``cross_border`` (港/澳 plates are 粤Z…), ``new_energy``.
    """
    if not plate:
        raise PlateError(plate, "empty", "empty plate")
    if plate[0] not in _PROVINCE_SET:
        raise PlateError(plate, "province", f"first character {plate[0]!r} is not a province abbreviation")
    if len(plate) not in (7, 8):
        raise PlateError(plate, "length", f"has {len(plate)} characters; a plate has 7 (regular) or 8 (new-energy)")
    if plate[1] not in _LETTER_SET:
        raise PlateError(
            plate, "authority", f"second character {plate[1]!r} is not an issuing-authority letter (A–Z without I, O)"
        )
    body = plate[2:]
    if len(body) == 5:
        serial, last = body[:4], body[4]
        for ch in serial:
            if ch not in _ALNUM_SET:
                raise PlateError(plate, "serial", f"character {ch!r} is not a letter (without I, O) or digit")
        if last not in _ALNUM_SET and last not in SPECIAL_SUFFIXES:
            raise PlateError(
                plate, "suffix", f"last character {last!r} is neither a letter, a digit nor one of {SPECIAL_SUFFIXES}"
            )
        if last in CROSS_BORDER_SUFFIXES and plate[:2] != CROSS_BORDER_PREFIX:
            raise PlateError(
                plate, "cross_border", f"a {last} plate is issued as {CROSS_BORDER_PREFIX}…, not {plate[:2]}…"
            )
        return
    if _SMALL_NEW_ENERGY.fullmatch(body) or _LARGE_NEW_ENERGY.fullmatch(body):
        return
    raise PlateError(
        plate,
        "new_energy",
        "a new-energy plate has D/F then a letter or digit and four digits (small), or five digits then D/F (large)",
    )


#: The whole grammar in one expression: a plate already in canonical form matches it (and is left
#: unchanged by ``normalize``), so ``parse`` can return it at once; anything else takes the long way,
#: which names the broken rule.
_CANONICAL = re.compile(
    f"[{PROVINCES}][{LETTERS}]"
    f"(?:[{_ALNUM}]{{4}}[{_ALNUM}学警挂领使]|[DF][{_ALNUM}][0-9]{{4}}|[0-9]{{5}}[DF])"
    f"|{CROSS_BORDER_PREFIX}[{_ALNUM}]{{4}}[{CROSS_BORDER_SUFFIXES}]"
)


def parse(raw: str) -> str:
    """Normalise and validate; return the canonical plate or raise ``PlateError``."""
    if _CANONICAL.fullmatch(raw):
        return raw
    plate = normalize(raw)
    validate(plate)
    return plate


def is_valid(plate: str) -> bool:
    """Whether an already normalised plate follows the grammar."""
    try:
        validate(plate)
    except PlateError:
        return False
    return True


def is_new_energy(plate: str) -> bool:
    return len(plate) == 8


#: Kind of each special last character (GA 36).
_SUFFIX_KINDS = {
    "学": "coach",
    "警": "police",
    "挂": "trailer",
    "港": "hong_kong",
    "澳": "macau",
    "领": "consulate",
    "使": "embassy",
}


def kind(plate: str) -> str:
    """The kind of a valid plate: ``regular``, ``new_energy_small``, ``new_energy_large``, or the
    special kind its last character names (``coach``, ``police``, ``trailer``, ``hong_kong``,
    ``macau``, ``consulate``, ``embassy``)."""
    validate(plate)
    if len(plate) == 8:
        return "new_energy_small" if plate[2] in NEW_ENERGY_MARKS else "new_energy_large"
    return _SUFFIX_KINDS.get(plate[-1], "regular")


def usual_colors(plate: str) -> frozenset[PlateColor]:
    """The colours a valid plate usually carries; a soft rule for recognisers, never enforced
    on identities (ETC units and operators may report others)."""
    if len(plate) == 8:
        small = plate[2] in NEW_ENERGY_MARKS
        return frozenset({PlateColor.GREEN} if small else {PlateColor.YELLOW_GREEN})
    last = plate[-1]
    if last == "警":
        return frozenset({PlateColor.WHITE})
    if last in "港澳领使":
        return frozenset({PlateColor.BLACK})
    if last in "学挂":
        return frozenset({PlateColor.YELLOW})
    return frozenset({PlateColor.BLUE, PlateColor.YELLOW, PlateColor.BLACK, PlateColor.WHITE, PlateColor.BLUE_WHITE})
