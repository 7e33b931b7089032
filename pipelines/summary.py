"""Plain-text tables of a run's metrics for the terminal."""

from __future__ import annotations

from typing import Any


def _clean_table(clean: dict[str, Any]) -> list[str]:
    lines = [f"Clean reconstruction quality ({clean.get('note', '')})"]
    lines.append(f"  {'split':<6} {'method':<14} {'PSNR dB':>9} {'SSIM':>7}")
    for split, table in clean.items():
        if split == "note":
            continue
        for method, figures in table.items():
            psnr, ssim = figures["psnr"]["mean"], figures["ssim"]["mean"]
            lines.append(f"  {split:<6} {method:<14} {psnr:>9.2f} {ssim:>7.3f}")
    return lines


def _attack_table(attack: dict[str, Any]) -> list[str]:
    settings = attack["settings"]
    unit = "% of ||y||" if settings["relative"] else "absolute"
    lines = [f"Worst-case error rho-hat(eps) (eps {unit}; PGA {settings['n_iter']} iterations)"]
    eps = settings["eps"]
    scale = 100 if settings["relative"] else 1
    lines.append(f"  {'method':<14} " + " ".join(f"{e * scale:>9.3g}" for e in eps) + "   s/slice")
    for method, figures in attack["models"].items():
        values = " ".join(f"{v:>9.3f}" for v in figures["rho_hat"])
        lines.append(f"  {method:<14} {values}   {figures['seconds_per_slice']:.2f}")
        random = " ".join(f"{v:>9.3f}" for v in figures["rho_hat_random"])
        lines.append(f"  {'  random':<14} {random}")
    return lines


def _linear_table(linear: dict[str, Any]) -> list[str]:
    keys = ("rel_err_fro", "rel_err_spec", "residual_ratio", "kappa_B", "kappa_B_hat")
    lines = ["Linear check (Raj et al. 4.5): trained B^ against the closed form B"]
    lines.append(f"  {'run':<10} " + " ".join(f"{k:>14}" for k in keys))
    paper = linear.get("paper", {})
    lines.append(
        f"  {'paper':<10} " + " ".join(f"{paper.get(k, float('nan')):>14.5g}" for k in keys)
    )
    for name, entry in linear.get("trained", {}).items():
        lines.append(f"  {name:<10} " + " ".join(f"{entry[k]:>14.5g}" for k in keys))
    return lines


def format_summary(metrics: dict[str, Any]) -> str:
    """The headline tables of a run, as printed at the end of ``ctrobust run``."""
    lines: list[str] = []
    if "clean" in metrics:
        lines += _clean_table(metrics["clean"])
    if "attack" in metrics:
        lines += _attack_table(metrics["attack"])
    if "linear" in metrics:
        lines += _linear_table(metrics["linear"])
    return "\n".join(lines)
