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


def format_summary(metrics: dict[str, Any]) -> str:
    """The headline tables of a run, as printed at the end of ``ctrobust run``."""
    lines: list[str] = []
    if "clean" in metrics:
        lines += _clean_table(metrics["clean"])
    return "\n".join(lines)
