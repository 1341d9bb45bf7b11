"""The plate grammar (GA 36) and normalisation: examples of each rule and property tests."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from crosspark.identity import PlateColor
from crosspark.plate import (
    DIGITS,
    LETTERS,
    PROVINCES,
    SPECIAL_SUFFIXES,
    PlateError,
    is_valid,
    kind,
    normalize,
    parse,
    usual_colors,
    validate,
)

ALNUM = LETTERS + DIGITS

provinces = st.sampled_from(PROVINCES)
letters = st.sampled_from(LETTERS)
alnums = st.sampled_from(ALNUM)
digits = st.sampled_from(DIGITS)


@st.composite
def regular_plates(draw: st.DrawFn) -> str:
    return draw(provinces) + draw(letters) + "".join(draw(st.lists(alnums, min_size=5, max_size=5)))


@st.composite
def special_plates(draw: st.DrawFn) -> str:
    suffix = draw(st.sampled_from(SPECIAL_SUFFIXES))
    head = "粤Z" if suffix in "港澳" else draw(provinces) + draw(letters)
    return head + "".join(draw(st.lists(alnums, min_size=4, max_size=4))) + suffix


@st.composite
def small_new_energy_plates(draw: st.DrawFn) -> str:
    return (
        draw(provinces)
        + draw(letters)
        + draw(st.sampled_from("DF"))
        + draw(alnums)
        + "".join(draw(st.lists(digits, min_size=4, max_size=4)))
    )


@st.composite
def large_new_energy_plates(draw: st.DrawFn) -> str:
    return (
        draw(provinces)
        + draw(letters)
        + "".join(draw(st.lists(digits, min_size=5, max_size=5)))
        + draw(st.sampled_from("DF"))
    )


valid_plates = st.one_of(regular_plates(), special_plates(), small_new_energy_plates(), large_new_energy_plates())


@given(valid_plates)
def test_every_valid_plate_survives_normalise_then_validate(plate: str) -> None:
    assert parse(plate) == plate


@given(valid_plates, st.lists(st.sampled_from([" ", "·", ".", "-", "\u3000"]), max_size=3), st.integers(0, 8))
def test_separators_anywhere_are_stripped(plate: str, separators: list[str], position: int) -> None:
    noisy = plate[:position] + "".join(separators) + plate[position:]
    assert parse(noisy) == plate


@given(valid_plates)
def test_full_width_lower_case_input_normalises_to_the_plate(plate: str) -> None:
    full_width = "".join(chr(ord(c) + 0xFEE0) if c.isascii() and c.isalnum() else c for c in plate.lower())
    assert parse(full_width) == plate


@given(st.text(max_size=40))
def test_random_strings_never_crash(raw: str) -> None:
    try:
        plate = parse(raw)
    except PlateError as error:
        assert error.rule
    else:
        assert is_valid(plate)


@given(st.text(alphabet=PROVINCES + ALNUM + SPECIAL_SUFFIXES + "IO", max_size=10))
def test_plate_like_strings_are_valid_or_name_their_rule(raw: str) -> None:
    try:
        validate(raw)
    except PlateError as error:
        assert error.rule in {
            "empty",
            "province",
            "length",
            "authority",
            "serial",
            "suffix",
            "cross_border",
            "new_energy",
        }


@pytest.mark.parametrize(
    ("raw", "plate"),
    [
        ("粤B 12345", "粤B12345"),
        ("粤b·1234o", "粤B12340"),
        ("京A-D12345", "京AD12345"),
        ("沪ａ１２３４５", "沪A12345"),
        ("粤BI234O", "粤B12340"),
        ("  苏E.DF123  ", "苏EDF123"),
    ],
)
def test_normalisation_examples(raw: str, plate: str) -> None:
    assert normalize(raw) == plate


@pytest.mark.parametrize(
    ("plate", "expected_kind"),
    [
        ("粤B12345", "regular"),
        ("京AD12345", "new_energy_small"),
        ("京AFA1234", "new_energy_small"),
        ("沪A12345D", "new_energy_large"),
        ("粤B1234学", "coach"),
        ("粤B1234警", "police"),
        ("粤B1234挂", "trailer"),
        ("粤Z1234港", "hong_kong"),
        ("粤ZA123澳", "macau"),
        ("沪A1234领", "consulate"),
        ("京A1234使", "embassy"),
    ],
)
def test_every_kind_of_plate_is_valid(plate: str, expected_kind: str) -> None:
    assert kind(plate) == expected_kind


@pytest.mark.parametrize(
    ("raw", "rule"),
    [
        ("", "empty"),
        ("测A12345", "province"),
        ("A12345", "province"),
        ("粤B1234", "length"),
        ("粤B1234567", "length"),
        ("粤112345", "authority"),
        ("粤B12学45", "serial"),
        ("粤B1234$", "suffix"),
        ("京A1234港", "cross_border"),
        ("粤B1234澳", "cross_border"),
        ("京AX12345", "new_energy"),
        ("京AD1234D", "new_energy"),
        ("京A1234DD", "new_energy"),
    ],
)
def test_broken_plates_name_the_rule(raw: str, rule: str) -> None:
    with pytest.raises(PlateError) as caught:
        parse(raw)
    assert caught.value.rule == rule


def test_overlong_input_is_refused_before_normalising() -> None:
    with pytest.raises(PlateError) as caught:
        normalize("粤B12345" * 10)
    assert caught.value.rule == "length"


def test_letters_i_and_o_are_read_as_digits_after_the_authority_letter() -> None:
    assert parse("粤BIO123") == "粤B10123"


def test_letter_o_as_authority_letter_is_refused() -> None:
    with pytest.raises(PlateError) as caught:
        parse("粤O12345")
    assert caught.value.rule == "authority"


@pytest.mark.parametrize(
    ("plate", "color"),
    [
        ("京AD12345", PlateColor.GREEN),
        ("沪A12345D", PlateColor.YELLOW_GREEN),
        ("粤B1234警", PlateColor.WHITE),
        ("粤Z1234港", PlateColor.BLACK),
        ("粤B1234学", PlateColor.YELLOW),
    ],
)
def test_usual_colours_of_special_plates(plate: str, color: PlateColor) -> None:
    assert color in usual_colors(plate)


@given(st.text(alphabet=PROVINCES + ALNUM + SPECIAL_SUFFIXES + "IO·", max_size=10))
def test_the_fast_path_agrees_with_normalise_then_validate(raw: str) -> None:
    try:
        slow: str | None = normalize(raw)
        validate(slow)  # type: ignore[arg-type]
    except PlateError:
        slow = None
    try:
        fast: str | None = parse(raw)
    except PlateError:
        fast = None
    assert fast == slow
