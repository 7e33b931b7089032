"""Plain-text tables of a run's metrics for the terminal."""

from __future__ import annotations

from typing import Any

from ctrobust.results import (
    AttackResult,
    CleanResult,
    CSConditioningResult,
    LinearResult,
    Metrics,
)
from ctrobust.verdict import format_verdict_table


def _clean_table(clean: CleanResult) -> list[str]:
    lines = [f"Clean reconstruction quality ({clean.note})"]
    lines.append(f"  {'split':<6} {'method':<14} {'PSNR dB':>9} {'SSIM':>7}")
    for split, table in clean.splits().items():
        for method, q in table.items():
            lines.append(f"  {split:<6} {method:<14} {q.psnr.mean:>9.2f} {q.ssim.mean:>7.3f}")
    return lines


def _attack_table(attack: AttackResult) -> list[str]:
    settings = attack.settings
    unit = "% of ||y||" if settings.relative else "absolute"
    lines = [f"Worst-case error rho-hat(eps) (eps {unit}; PGA {settings.n_iter} iterations)"]
    scale = 100 if settings.relative else 1
    lines.append(
        f"  {'method':<14} " + " ".join(f"{e * scale:>9.3g}" for e in settings.eps) + "   s/slice"
    )
    for method, figures in attack.models.items():
        values = " ".join(f"{v:>9.3f}" for v in figures.rho_hat)
        lines.append(f"  {method:<14} {values}   {figures.seconds_per_slice:.2f}")
        random = " ".join(f"{v:>9.3f}" for v in figures.rho_hat_random)
        lines.append(f"  {'  random':<14} {random}")
    return lines


def _linear_table(linear: LinearResult) -> list[str]:
    keys = ("rel_err_fro", "rel_err_spec", "residual_ratio", "kappa_B", "kappa_B_hat")
    lines = ["Linear check (Raj et al. 4.5): trained B^ against the closed form B"]
    lines.append(f"  {'run':<10} " + " ".join(f"{k:>14}" for k in keys))
    lines.append(f"  {'paper':<10} " + " ".join(f"{linear.paper[k]:>14.5g}" for k in keys))
    for name, entry in linear.trained.items():
        lines.append(f"  {name:<10} " + " ".join(f"{entry[k]:>14.5g}" for k in keys))
    return lines


def _cs_table(cs: CSConditioningResult) -> list[str]:
    lines = [f"Compressive sensing (Raj et al. 4.1-4.3), {cs.size}: rho-hat(eps), eps absolute"]
    lines.append(
        f"  {'matrix':<9} {'kappa':>6} {'scheme':<13} " + " ".join(f"{e:>8g}" for e in cs.eps)
    )
    for name, matrix in cs.matrices.items():
        kappa = f"{matrix.condition_number:6.2f}"
        for scheme, entry in matrix.schemes.items():
            values = " ".join(f"{v:>8.3f}" for v in entry.rho_hat)
            lines.append(f"  {name:<9} {kappa} {scheme:<13} {values}")
            kappa = " " * 6
        gap = " ".join(f"{g:>8.3f}" for g in matrix.gap)
        lines.append(f"  {name:<9} {'':6} {'gap':<13} {gap}")
    return lines


def format_summary(metrics: dict[str, Any]) -> str:
    """The headline tables of a run, as printed at the end of ``ctrobust run``."""
    typed = Metrics.model_validate(metrics)
    lines: list[str] = []
    if typed.clean:
        lines += _clean_table(typed.clean)
    if typed.attack:
        lines += _attack_table(typed.attack)
    if typed.verdict:
        lines += ["Per-series verdict", *format_verdict_table(typed.verdict).splitlines()]
    if typed.linear:
        lines += _linear_table(typed.linear)
    if typed.cs_conditioning:
        lines += _cs_table(typed.cs_conditioning)
    return "\n".join(lines)
