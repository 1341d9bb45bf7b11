"""Localisation kernels (Cython); NumPy twins in ``recognition_core._reference``."""

import numpy as np
import numpy.typing as npt

STAT_AREA: int
STAT_X0: int
STAT_Y0: int
STAT_X1: int
STAT_Y1: int
STAT_SX: int
STAT_SY: int
STAT_SXX: int
STAT_SYY: int
STAT_SXY: int
N_STATS: int

def cue_maps(
    bgr: npt.NDArray[np.uint8],
    table: npt.NDArray[np.uint8],
    colour: npt.NDArray[np.uint8],
    edge: npt.NDArray[np.uint8],
    luma: npt.NDArray[np.uint8],
) -> None: ...
def label_regions(
    mask: npt.NDArray[np.uint8], labels: npt.NDArray[np.int32] | None = None
) -> npt.NDArray[np.float64]: ...
def line_texture(
    luma: npt.NDArray[np.uint8],
    rects: npt.NDArray[np.float64],
    n_lines: int,
    min_contrast: float,
    contrast_frac: float,
) -> npt.NDArray[np.int32]: ...
def shear_scores(binary: npt.NDArray[np.uint8], shears: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]: ...
