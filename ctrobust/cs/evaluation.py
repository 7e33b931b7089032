"""Worst-case error rho-hat(eps) of a trained f, with the PGA of the CT attacks (Raj eq. 7-8).

For every eps of the grid, :func:`ctrobust.attacks.measurement_pga` maximises
||f(y + delta) - x||_2 over ||delta||_2 <= eps (absolute, in measurement units, as in the
paper's Sec. 4) around the noise-free y = A x of each test patch; rho-hat is the mean of
the per-patch maxima (:func:`ctrobust.attacks.rho_hat`). At eps = 0 the ascent has nothing to
move, so it runs no step and rho-hat is the clean error.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset

from ctrobust.attacks import RhoHat, measurement_pga, rho_hat
from ctrobust.config import CSConditioningConfig


@dataclass(frozen=True)
class WorstCase:
    """rho-hat at one eps and the attacked reconstructions of the first ``shown`` patches."""

    eps: float
    rho: RhoHat
    shown: Tensor


def worst_case_errors(
    f: torch.nn.Module,
    y: Tensor,
    x: Tensor,
    eps_grid: Sequence[float],
    cfg: CSConditioningConfig,
    *,
    seed: int,
    device: torch.device,
) -> list[WorstCase]:
    """rho-hat(eps) of ``f`` (in eval mode) on the test pairs (y, x) at every eps of the grid."""
    loader = DataLoader(TensorDataset(y, x), batch_size=cfg.batch_size)
    out = []
    for eps in eps_grid:
        errors, shown = [], []
        generator = torch.Generator().manual_seed(seed)
        for yb, xb in loader:
            result = measurement_pga(
                f,
                yb.to(device),
                xb.to(device),
                float(eps),
                n_iter=cfg.pga_iterations if eps > 0 else 0,
                step=cfg.pga_step,
                momentum=cfg.pga_momentum,
                generator=generator,
            )
            errors.append(result.error.cpu())
            if sum(len(s) for s in shown) < cfg.shown:
                shown.append(result.reconstruction.cpu())
        out.append(WorstCase(float(eps), rho_hat(torch.cat(errors)), torch.cat(shown)[: cfg.shown]))
    return out


def adversarial_gap(rho: dict[str, list[float]], adversarial: str = "adversarial") -> list[float]:
    """Per eps: the best (lowest) rho-hat among the other schemes minus the adversarial one
    (positive: the adversarially trained f is the more robust)."""
    others = [values for name, values in rho.items() if name != adversarial]
    if not others or adversarial not in rho:
        raise ValueError("the gap needs the adversarial scheme and at least one other")
    return [min(v[i] for v in others) - a for i, a in enumerate(rho[adversarial])]
