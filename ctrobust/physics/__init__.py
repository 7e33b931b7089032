"""CT physics: parallel-beam operator (A, A^T, ramp H, FBP) on ASTRA, units and noise model."""

from ctrobust.physics import units
from ctrobust.physics.parallel_beam import ParallelBeam2D, default_n_det, power_norm
from ctrobust.physics.ramp import WINDOWS

__all__ = ["WINDOWS", "ParallelBeam2D", "default_n_det", "power_norm", "units"]
