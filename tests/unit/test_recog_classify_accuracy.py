"""Accuracy floors of the shipped classifier: a fixed set of synthetic glyphs (rendered, degraded,
cut with jitter as in training, from a seed training never uses) and the held-out CCPD crops."""

import numpy as np
import pytest

from crosspark.plate import ALPHABET, DIGITS, LETTERS, PROVINCES
from recognition_core.classify import load_classifier
from recognition_core.synth import FontMissingError, available_fonts

GROUP = {"province": PROVINCES, "letter": LETTERS, "digit": DIGITS}


def by_group(pred: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    out = {}
    for name, chars in GROUP.items():
        mask = np.isin(labels, [ALPHABET.index(c) for c in chars])
        out[name] = float((pred[mask] == labels[mask]).mean())
    return out


@pytest.fixture(scope="module")
def synthetic_glyphs() -> tuple[np.ndarray, np.ndarray]:
    try:
        available_fonts("cjk"), available_fonts("latin")
    except FontMissingError as exc:
        pytest.skip(f"plate fonts not installed ({exc}); run recognition_core/train/fonts.sh")
    from recognition_core.train.data import synthetic_plate_glyphs

    rng = np.random.default_rng(20_240_601)
    pairs = [pair for _ in range(120) for pair in synthetic_plate_glyphs(rng)]
    return np.stack([g for g, _ in pairs]), np.array([c for _, c in pairs])


@pytest.mark.parametrize(("group", "floor"), [("province", 0.8), ("letter", 0.96), ("digit", 0.95)])
def test_classifier_accuracy_on_fixed_synthetic_glyphs_is_above_floor(synthetic_glyphs, group, floor):
    glyphs, labels = synthetic_glyphs
    pred = load_classifier().predict_proba(glyphs).argmax(axis=1)
    assert by_group(pred, labels)[group] >= floor
