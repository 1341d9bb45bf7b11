"""The shipped classifier on the held-out CCPD dev crops (never used in training), levelled and cut by
fitting the GA 36 layout to each crop. Skips where ``../shared/data`` is absent. The floors sit a few
points under the shipped weights' figures (``weights/chars.json``); most misses are cuts that the
fixed layout places across two characters on strongly tilted crops, not misread characters."""

from pathlib import Path

import numpy as np
import pytest

from crosspark.plate import ALPHABET
from recognition_core.classify import load_classifier
from recognition_core.decode import best_plate

CCPD = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "alpr" / "ccpd-crops-dev"


@pytest.fixture(scope="module")
def held_out():
    if not CCPD.is_dir():
        pytest.skip(f"dev data absent: {CCPD} (see shared/data/README.md)")
    from recognition_core.train.ccpd import holdout, load_crops
    from recognition_core.train.data import crop_glyphs

    crops = [crop for crop in load_crops(CCPD) if holdout(crop.name)]
    return [crop_glyphs(crop) for crop in crops]


def test_held_out_crops_are_a_fair_sample(held_out):
    assert len(held_out) >= 100


def test_classifier_reads_held_out_alphanumerics_above_floor(held_out):
    clf = load_classifier()
    right = total = 0
    for glyphs, plate in held_out:
        pred = clf.predict_proba(glyphs[1:]).argmax(axis=1)
        right += sum(ALPHABET[i] == ch for i, ch in zip(pred, plate[1:], strict=True))
        total += len(plate) - 1
    assert right / total >= 0.87


def test_classifier_reads_held_out_provinces_above_floor(held_out):
    clf = load_classifier()
    pred = clf.predict_proba(np.stack([glyphs[0] for glyphs, _ in held_out])).argmax(axis=1)
    right = sum(ALPHABET[i] == plate[0] for i, (_, plate) in zip(pred, held_out, strict=True))
    # 0.86 shipped: the held-out crops are nearly all 皖, and the classifier is no longer taught
    # that most plates are (``--province-copies``), which cost a few of them and gains elsewhere
    assert right / len(held_out) >= 0.82


def test_decoded_held_out_plates_are_exact_above_floor(held_out):
    clf = load_classifier()
    exact = 0
    for glyphs, plate in held_out:
        decoded = best_plate(clf.predict_proba(glyphs))
        exact += decoded is not None and decoded[0] == plate
    assert exact / len(held_out) >= 0.7
