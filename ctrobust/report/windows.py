"""CT display windows: how relative attenuation is shown to a radiologist.

Images are stored as relative attenuation ``x = mu / mu_water`` and shown in Hounsfield
units, HU = 1000 (x - 1), through a window of width W and level L: grey goes from black at
L - W/2 to white at L + W/2.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ctrobust.physics.units import relative_to_hu


@dataclass(frozen=True)
class Window:
    """A display window in HU."""

    name: str
    width: float
    level: float

    @property
    def low(self) -> float:
        return self.level - self.width / 2

    @property
    def high(self) -> float:
        return self.level + self.width / 2

    @property
    def label(self) -> str:
        return f"{self.name} W{self.width:g}/L{self.level:g}"


SOFT_TISSUE = Window("soft tissue", 400, 40)
LUNG = Window("lung", 1500, -600)
BONE = Window("bone", 1800, 400)
WINDOWS = (SOFT_TISSUE, LUNG, BONE)
"""The windows every reconstruction is shown in, in this order."""


def to_hu(x: torch.Tensor | np.ndarray) -> np.ndarray:
    """A (…, N, N) relative-attenuation image as a float32 (N, N) HU array."""
    array = x.detach().cpu().double().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)
    return np.asarray(relative_to_hu(array.reshape(array.shape[-2:])), dtype=np.float32)


def difference_hu(a: torch.Tensor | np.ndarray, b: torch.Tensor | np.ndarray) -> np.ndarray:
    """a - b in HU (the offset cancels, so this is 1000 (a - b))."""
    return to_hu(a) - to_hu(b)
