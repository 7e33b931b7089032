"""The one ``prepare_batch`` contract of the project's ignite engines.

Every engine (supervised, adversarial, attack) takes ``prepare_batch(batch, device,
non_blocking) -> (input, target)``, the signature of ignite's own ``prepare_batch``, so a
batch preparer written for one engine works in all of them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

PrepareBatch = Callable[[Any, torch.device, bool], tuple[Tensor, Tensor]]


def prepare_pair(
    batch: Mapping[str, Tensor] | Sequence[Tensor], device: torch.device, non_blocking: bool
) -> tuple[Tensor, Tensor]:
    """(y, x) on ``device`` from a dict with keys "y" and "x" or a (y, x, ...) tuple."""
    y, x = (batch["y"], batch["x"]) if isinstance(batch, Mapping) else (batch[0], batch[1])
    return y.to(device, non_blocking=non_blocking), x.to(device, non_blocking=non_blocking)
