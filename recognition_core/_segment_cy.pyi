"""Segmentation kernels (Cython); NumPy twins in ``recognition_core._reference``."""

import numpy as np
import numpy.typing as npt

def binarize_local(
    gray: npt.NDArray[np.uint8], rx: int, ry: int, offset_frac: float, min_offset: int
) -> tuple[npt.NDArray[np.uint8], npt.NDArray[np.int32]]: ...
def fit_slots(
    profile: npt.NDArray[np.float64],
    lefts: npt.NDArray[np.float64],
    widths: npt.NDArray[np.float64],
    scales: npt.NDArray[np.float64],
    x_from: float,
    x_to: float,
    x_step: float,
    gap_weight: float,
    outside_weight: float,
    overhang: float,
) -> npt.NDArray[np.float64]: ...
