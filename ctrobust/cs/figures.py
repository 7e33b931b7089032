"""Figures of the compressive-sensing study as PNG bytes (matplotlib's Agg canvas, no pyplot).

* singular-value histograms of both matrices (the paper's Fig. 4c/f);
* rho-hat(eps) per scheme for each matrix (Fig. 4a/d);
* the adversarial gap against eps for both matrices;
* qualitative rows (Figs. 2-3): the true patches, then plain, Parseval and adversarial
  reconstructions under the worst-case perturbation of each eps.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from torch import Tensor

LABELS = {
    "plain": "plain",
    "weight_decay": "weight decay",
    "parseval": "Parseval",
    "adversarial": "adversarial (G/f)",
    "gaussian": "Gaussian",
    "dct": "DCT submatrix",
}


def _png(fig: Figure) -> bytes:
    FigureCanvasAgg(fig)
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    return buffer.getvalue()


def singular_value_histograms(singular_values: Mapping[str, np.ndarray]) -> bytes:
    """One histogram per matrix, titled with its condition number sigma_max / sigma_min."""
    fig = Figure(figsize=(4.0 * len(singular_values), 3.0))
    for i, (name, s) in enumerate(singular_values.items()):
        ax = fig.add_subplot(1, len(singular_values), i + 1)
        ax.hist(s, bins=30, color="0.4")
        ax.set_title(f"{LABELS.get(name, name)}: κ = {s.max() / s.min():.2f}")
        ax.set_xlabel(f"singular value ({len(s)} in all)")
        ax.set_ylabel("count")
    return _png(fig)


def rho_curves(eps: Sequence[float], rho: Mapping[str, Mapping[str, Sequence[float]]]) -> bytes:
    """rho-hat against eps, one panel per matrix, one line per scheme."""
    fig = Figure(figsize=(4.0 * len(rho), 3.2))
    for i, (matrix, schemes) in enumerate(rho.items()):
        ax = fig.add_subplot(1, len(rho), i + 1)
        for scheme, values in schemes.items():
            ax.plot(eps, values, marker="o", label=LABELS.get(scheme, scheme))
        ax.set_title(LABELS.get(matrix, matrix))
        ax.set_xlabel("ε (ℓ2, measurement units)")
        ax.set_ylabel("ρ̂(ε)")
        ax.legend(fontsize=7)
    return _png(fig)


def gap_curves(eps: Sequence[float], gaps: Mapping[str, Sequence[float]]) -> bytes:
    """Best other scheme's rho-hat minus the adversarial one, against eps, per matrix."""
    fig = Figure(figsize=(4.5, 3.2))
    ax = fig.add_subplot(1, 1, 1)
    for matrix, gap in gaps.items():
        ax.plot(eps, gap, marker="o", label=LABELS.get(matrix, matrix))
    ax.axhline(0.0, color="0.6", lw=0.8)
    ax.set_xlabel("ε (ℓ2, measurement units)")
    ax.set_ylabel("ρ̂ best other − ρ̂ adversarial")
    ax.legend(fontsize=8)
    return _png(fig)


def _mosaic(images: Tensor) -> np.ndarray:
    """(k, 1, s, s) -> one row (s, k * s + gaps) with a white one-pixel gap between patches."""
    k, _, s, _ = images.shape
    row = np.ones((s, k * (s + 1) - 1), np.float32)
    for i in range(k):
        row[:, i * (s + 1) : i * (s + 1) + s] = images[i, 0].numpy()
    return row


def qualitative_rows(
    truth: Tensor, shown: Mapping[str, Sequence[Tensor]], eps: Sequence[float], title: str
) -> bytes:
    """Rows: true patches, then each scheme's reconstruction; one column block per eps.

    Grey scale is the data range [-1, 1] (-1000..+1000 HU) for every panel.
    """
    rows = [("true", [truth] * len(eps))] + [(LABELS.get(k, k), list(v)) for k, v in shown.items()]
    width = truth.shape[0] * 1.0 * len(eps)
    fig = Figure(figsize=(max(6.0, width), 1.1 * len(rows) + 0.6))
    fig.suptitle(title)
    for r, (label, per_eps) in enumerate(rows):
        for c, images in enumerate(per_eps):
            ax = fig.add_subplot(len(rows), len(eps), r * len(eps) + c + 1)
            ax.imshow(_mosaic(images), cmap="gray", vmin=-1.0, vmax=1.0, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if c == 0:
                ax.set_ylabel(label, fontsize=8)
            if r == 0:
                ax.set_title(f"ε = {eps[c]:g}", fontsize=9)
    return _png(fig)
