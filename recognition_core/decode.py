"""Grammar decode (语法校验): per-slot character probabilities → the most probable valid plate.

The GA 36 grammar of ``crosspark.plate`` fixes which characters each slot may hold, and the slots of
one form are independent, so the best plate of a form takes the most probable allowed character in
every slot; with two forms (the new-energy plates) the one with the larger product wins.
"""

from __future__ import annotations

import numpy as np

from crosspark.plate import (
    ALPHABET,
    CROSS_BORDER_PREFIX,
    CROSS_BORDER_SUFFIXES,
    DIGITS,
    LETTERS,
    NEW_ENERGY_MARKS,
    PROVINCES,
    SPECIAL_SUFFIXES,
    is_valid,
)

_INDEX = {ch: i for i, ch in enumerate(ALPHABET)}


def _mask(chars: str) -> np.ndarray:
    mask = np.zeros(len(ALPHABET), bool)
    mask[[_INDEX[ch] for ch in chars]] = True
    return mask


_PROVINCE = _mask(PROVINCES)
_LETTER = _mask(LETTERS)
_ALNUM = _mask(LETTERS + DIGITS)
_DIGIT = _mask(DIGITS)
_MARK = _mask(NEW_ENERGY_MARKS)
_LAST = _mask(LETTERS + DIGITS + "".join(c for c in SPECIAL_SUFFIXES if c not in CROSS_BORDER_SUFFIXES))

_CROSS_PROVINCE, _CROSS_OFFICE = _mask(CROSS_BORDER_PREFIX[0]), _mask(CROSS_BORDER_PREFIX[1])
_CROSS_SUFFIX = _mask(CROSS_BORDER_SUFFIXES)

#: Slot masks of every plate form, by length: regular and cross-border (粤Z…港/澳) with 7, small and
#: large new-energy with 8.
_FORMS: dict[int, tuple[np.ndarray, ...]] = {
    7: (
        np.stack([_PROVINCE, _LETTER, _ALNUM, _ALNUM, _ALNUM, _ALNUM, _LAST]),
        np.stack([_CROSS_PROVINCE, _CROSS_OFFICE, _ALNUM, _ALNUM, _ALNUM, _ALNUM, _CROSS_SUFFIX]),
    ),
    8: (
        np.stack([_PROVINCE, _LETTER, _MARK, _ALNUM, _DIGIT, _DIGIT, _DIGIT, _DIGIT]),
        np.stack([_PROVINCE, _LETTER, _DIGIT, _DIGIT, _DIGIT, _DIGIT, _DIGIT, _MARK]),
    ),
}


#: The forms of each length stacked (forms, n, len(ALPHABET)): one ``argmax`` chooses for all of them.
_FORM_STACKS = {n: np.stack(forms) for n, forms in _FORMS.items()}


def best_plate(proba: np.ndarray) -> tuple[str, float] | None:
    """The most probable valid plate for ``proba`` of shape (n, len(ALPHABET)), one row per slot.

    The confidence is the smallest probability among the chosen characters (the weakest slot), in
    [0, 1]. Returns None when n is neither 7 nor 8 or no valid plate has any probability.
    """
    proba = np.asarray(proba, dtype=np.float64)
    if proba.ndim != 2 or proba.shape[1] != len(ALPHABET):
        raise ValueError(f"expected probabilities of shape (n, {len(ALPHABET)}), got {proba.shape}")
    masks = _FORM_STACKS.get(proba.shape[0])
    if masks is None:
        return None
    if not np.isfinite(proba).all():
        proba = np.nan_to_num(proba, nan=0.0, posinf=1.0, neginf=0.0)
    proba = np.clip(proba, 0.0, 1.0)
    choices = np.where(masks, proba, -1.0).argmax(axis=2)  # (forms, n)
    chosen = proba[np.arange(proba.shape[0]), choices]
    candidates = []
    for choice, probs in zip(choices.tolist(), chosen, strict=True):
        weakest = float(probs.min())
        if weakest > 0.0:
            plate = "".join(ALPHABET[i] for i in choice)
            candidates.append((float(np.log(probs).sum()), plate, weakest))
    for _, plate, confidence in sorted(candidates, reverse=True):
        if is_valid(plate):  # the forms are the grammar; this guards against it growing a rule
            return plate, confidence
    return None
