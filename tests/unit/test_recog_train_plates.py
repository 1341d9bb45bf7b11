"""Training cuts for the sequence reader (``recognition_core.train.plates``): sizes, texts, plate-free
cuts, reproducibility across processes, and CCPD crops with their province painted over."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from crosspark.identity import PlateColor
from crosspark.plate import PROVINCES
from recognition_core.synth import FontMissingError, render_plate

try:
    render_plate("京A12345", PlateColor.BLUE)
except FontMissingError as exc:  # pragma: no cover - depends on the machine
    pytest.skip(f"plate fonts not installed ({exc}); run recognition_core/train/fonts.sh", allow_module_level=True)

from recognition_core.train import plates

CCPD = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "alpr" / "ccpd-crops-dev"


def test_a_set_holds_plates_and_plate_free_cuts_of_the_asked_size() -> None:
    imgs, texts = plates.make_set(40, seed=3, shape=(24, 96), negative_share=0.25, workers=1)
    assert imgs.shape == (40, 24, 96) and imgs.dtype == np.uint8 and len(texts) == 40
    assert 0 < texts.count("") < 40
    assert all(len(t) in (7, 8) and t[0] in PROVINCES for t in texts if t)


def test_a_set_is_the_same_whatever_the_number_of_processes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(plates, "CHUNK", 7)
    one = plates.make_set(16, seed=1, shape=(24, 96), workers=1)
    two = plates.make_set(16, seed=1, shape=(24, 96), workers=2)
    assert one[1] == two[1] and np.array_equal(one[0], two[0])


def test_repainting_a_ccpd_crop_changes_its_province_and_keeps_the_rest() -> None:
    if not CCPD.is_dir():
        pytest.skip(f"dev data absent: {CCPD}")
    from recognition_core.train.ccpd import load_crops

    crop = load_crops(CCPD)[0]
    rng = np.random.default_rng(0)
    painted = [plates.repaint_province(crop.bgr, crop.plate, rng) for _ in range(8)]
    assert all(text[1:] == crop.plate[1:] and text[0] in PROVINCES for _, text in painted)
    assert len({text[0] for _, text in painted}) > 1
    assert all(img.shape == crop.bgr.shape for img, _ in painted)


@pytest.mark.parametrize("seed", range(40))
def test_a_run_of_one_digit_keeps_a_valid_plate_valid(seed: int) -> None:
    from crosspark.plate import DIGITS, is_valid
    from recognition_core.synth import random_plate

    rng = np.random.default_rng(seed)
    text, _ = random_plate(rng, PlateColor.BLUE)
    out = plates._with_run(text, rng)
    assert len(out) == len(text) and out[:2] == text[:2]
    assert is_valid(out)
    if out != text:  # changed: the changed characters are one digit repeated, two or more times
        changed = {b for a, b in zip(text, out, strict=True) if a != b}
        assert len(changed) == 1 and changed <= set(DIGITS)
        digit = changed.pop()
        assert digit * 2 in out


def test_runs_of_one_digit_are_in_a_share_of_the_set() -> None:
    _, texts = plates.make_set(400, seed=2, shape=(24, 96), negative_share=0.0, workers=1)
    runs = sum(any(d * 3 in t for d in "0123456789") for t in texts)
    # 15 % get a run of 2 to 5 (3 or more in about half of them); random text rarely has one
    assert 0.03 * len(texts) < runs < 0.2 * len(texts)
