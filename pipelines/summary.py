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


def format_summary(metrics: dict[str, Any]) -> str:
    """The headline tables of a run, as printed at the end of ``ctrobust run``."""
    lines: list[str] = []
    if "clean" in metrics:
        lines += _clean_table(metrics["clean"])
    if "attack" in metrics:
        lines += _attack_table(metrics["attack"])
    return "\n".join(lines)
