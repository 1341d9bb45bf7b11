import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from crosspark.plate import ALPHABET, is_valid
from recognition_core.decode import best_plate

K = len(ALPHABET)


def one_hot(text: str, p: float = 0.9) -> np.ndarray:
    proba = np.full((len(text), K), (1 - p) / (K - 1))
    for slot, ch in enumerate(text):
        proba[slot, ALPHABET.index(ch)] = p
    return proba


probabilities = st.floats(0.0, 1.0, allow_nan=False, width=32)


@settings(max_examples=200, deadline=None)
@given(arrays(np.float32, st.tuples(st.integers(7, 8), st.just(K)), elements=probabilities))
def test_decode_returns_a_valid_plate_or_none_for_any_probabilities(proba):
    result = best_plate(proba)
    if result is not None:
        plate, confidence = result
        assert is_valid(plate) and len(plate) == len(proba)
        assert 0.0 < confidence <= 1.0


@settings(max_examples=100, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(7, 8))
def test_decode_of_softmax_rows_is_always_valid(seed, n):
    logits = np.random.default_rng(seed).normal(size=(n, K)) * 4
    proba = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    plate, _ = best_plate(proba)
    assert is_valid(plate)


@pytest.mark.parametrize("plate", ["皖A12345", "粤BD12345", "沪A12345F", "京A1234警", "苏E2345学"])
def test_decode_reads_a_confident_valid_plate_unchanged(plate):
    assert best_plate(one_hot(plate))[0] == plate


def test_decode_puts_a_letter_in_the_authority_slot_when_a_digit_scores_higher():
    proba = one_hot("皖B12345")
    proba[1, ALPHABET.index("8")] = 0.95  # the classifier thinks the B is an 8
    proba[1, ALPHABET.index("B")] = 0.04
    assert best_plate(proba)[0] == "皖B12345"


def test_decode_keeps_special_suffixes_out_of_the_middle_slots():
    proba = one_hot("皖A12345")
    proba[3, ALPHABET.index("警")] = 0.99
    plate, _ = best_plate(proba)
    assert "警" not in plate


def test_decode_chooses_the_more_probable_new_energy_form():
    proba = one_hot("粤B12345D")  # large new-energy: five digits then D
    plate, _ = best_plate(proba)
    assert plate == "粤B12345D"


def test_decode_confidence_is_the_weakest_chosen_probability():
    proba = one_hot("皖A12345", p=0.9)
    proba[4, ALPHABET.index("3")] = 0.6
    assert best_plate(proba)[1] == pytest.approx(0.6)


def test_decode_returns_none_for_a_slot_count_that_is_no_plate_length():
    assert best_plate(one_hot("皖A1234")) is None


def test_decode_returns_none_when_no_valid_plate_has_any_probability():
    proba = np.zeros((7, K))
    proba[:, ALPHABET.index("1")] = 1.0  # a digit where the province must be
    assert best_plate(proba) is None


def test_decode_rejects_a_matrix_over_another_alphabet():
    with pytest.raises(ValueError):
        best_plate(np.ones((7, K - 1)) / K)


def test_decode_reads_a_cross_border_plate():
    assert best_plate(one_hot("粤Z1234港"))[0] == "粤Z1234港"


def test_decode_never_puts_a_cross_border_suffix_behind_another_office():
    proba = one_hot("皖A12345")
    proba[6, ALPHABET.index("港")] = 0.99
    plate, _ = best_plate(proba)
    assert not plate.endswith("港")


def test_decode_reads_nan_as_impossible_and_infinity_as_certain():
    proba = one_hot("京A12345")
    proba[2] = np.nan  # a slot the reader could not score: no character of it is possible
    assert best_plate(proba) is None
    proba = one_hot("京A12345", p=0.6)
    proba[3, ALPHABET.index("7")] = np.inf
    proba[4, ALPHABET.index("8")] = -np.inf
    assert best_plate(proba) == ("京A17345", 0.6)
