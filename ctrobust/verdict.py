"""Per-series pass/fail verdicts, with thresholds stated relative to the simulated noise.

The attack stage attacks every chosen slice once more at eps equal to that slice's noise
norm ||y - A x0||: the measured sinogram itself lies on that sphere, so a perturbation of
that size is one the scanner could have produced. A reconstructor passes on a series when,
on every attacked slice of it,

- the worst-case error ||f(y0 + delta) - x_gt|| is at most ``k_ratio`` times the error
  under Gaussian noise of the same norm (worst case not much worse than typical noise), and
- the RMS change of the image, f(y0 + delta) - f(y0), is at most ``max_rms_hu`` HU.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from pydantic import BaseModel, ConfigDict, Field


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NoiseLevelAttack(_Section):
    """Per-slice figures of the attack at eps = the slice's simulated noise norm."""

    eps_abs: list[float] = Field(description="||y - A x0||_2 of each slice, the attack radius")
    error: list[float] = Field(description="worst-case ||f(y0 + delta) - x_gt||_2 per slice")
    random_error: list[float] = Field(description="mean error under Gaussian noise of that norm")
    rms_change_hu: list[float] = Field(description="RMS of f(y0 + delta) - f(y0) in HU")


class SeriesVerdict(_Section):
    """One reconstructor on one series: clean quality, robustness figures and the verdict."""

    method: str
    label: str = Field(description="the reconstructor's human name")
    series: str = Field(description="patient:series-suffix (pseudonyms when de-identified)")
    description: str = Field(description="SeriesDescription of the source")
    slices: int
    psnr: float = Field(description="clean PSNR against x_gt, mean over the attacked slices")
    ssim: float
    rho_hat: list[float] = Field(description="mean worst-case error at each eps of attack.eps")
    ratio: float = Field(description="largest worst-case / random error ratio at eps = noise")
    rms_hu: float = Field(description="largest RMS image change in HU at eps = noise")
    worst_slice: str = Field(description="the slice furthest past (or nearest to) a threshold")
    passed: bool
    sentence: str


class VerdictResult(_Section):
    """The ``verdict`` section of metrics.json."""

    rule: str
    k_ratio: float
    max_rms_hu: float
    eps: list[float]
    series: list[SeriesVerdict]


@dataclass(frozen=True)
class MethodFigures:
    """What the verdict reads of one reconstructor, per attacked slice (rows aligned)."""

    label: str
    psnr: Sequence[float]
    ssim: Sequence[float]
    error_per_eps: Sequence[Sequence[float]]
    at_noise: NoiseLevelAttack


def rule_sentence(k_ratio: float, max_rms_hu: float) -> str:
    """The pass rule in words, as the report states it."""
    return (
        f"At eps equal to each slice's simulated noise norm ||y - A x0||, a reconstructor "
        f"passes on a series when on every attacked slice the worst-case error is at most "
        f"{k_ratio:g} x the error under random Gaussian noise of the same norm and the "
        f"worst-case RMS change of the image is at most {max_rms_hu:g} HU."
    )


def _sentence(v: SeriesVerdict, k_ratio: float, max_rms_hu: float) -> str:
    word = "PASSES" if v.passed else "FAILS"
    return (
        f"{v.label} {word} on series {v.series}"
        + (f" ({v.description})" if v.description else "")
        + f": over {v.slices} attacked slice(s) the worst-case error reaches {v.ratio:.2f} x "
        f"the random-noise error (limit {k_ratio:g}) and the RMS change reaches "
        f"{v.rms_hu:.1f} HU (limit {max_rms_hu:g} HU); worst slice {v.worst_slice}."
    )


def _mean(values: Sequence[float]) -> float:
    return float(sum(values) / len(values))


def series_verdicts(
    series_of: Sequence[str],
    slice_labels: Sequence[str],
    descriptions: Mapping[str, str],
    methods: Mapping[str, MethodFigures],
    eps: Sequence[float],
    *,
    k_ratio: float,
    max_rms_hu: float,
) -> VerdictResult:
    """Group the attacked slices by series and judge every reconstructor on every series.

    ``series_of[i]`` and ``slice_labels[i]`` name slice i; every per-slice list of
    ``methods`` follows the same order.
    """
    groups: dict[str, list[int]] = {}
    for i, key in enumerate(series_of):
        groups.setdefault(key, []).append(i)
    verdicts = []
    for name, m in methods.items():
        for key, rows in groups.items():
            ratios = [m.at_noise.error[i] / max(m.at_noise.random_error[i], 1e-30) for i in rows]
            rms = [m.at_noise.rms_change_hu[i] for i in rows]
            margin = [max(r / k_ratio, h / max_rms_hu) for r, h in zip(ratios, rms, strict=True)]
            worst = rows[max(range(len(rows)), key=margin.__getitem__)]
            v = SeriesVerdict(
                method=name,
                label=m.label,
                series=key,
                description=descriptions.get(key, ""),
                slices=len(rows),
                psnr=_mean([m.psnr[i] for i in rows]),
                ssim=_mean([m.ssim[i] for i in rows]),
                rho_hat=[_mean([errors[i] for i in rows]) for errors in m.error_per_eps],
                ratio=max(ratios),
                rms_hu=max(rms),
                worst_slice=slice_labels[worst],
                passed=max(ratios) <= k_ratio and max(rms) <= max_rms_hu,
                sentence="",
            )
            verdicts.append(v.model_copy(update={"sentence": _sentence(v, k_ratio, max_rms_hu)}))
    return VerdictResult(
        rule=rule_sentence(k_ratio, max_rms_hu),
        k_ratio=k_ratio,
        max_rms_hu=max_rms_hu,
        eps=list(eps),
        series=verdicts,
    )


def format_verdict_table(result: VerdictResult) -> str:
    """The verdict table as fixed-width text, for the end of ``ctrobust run``."""
    eps_heads = [f"rho@{e:g}" for e in result.eps]
    heads = ["method", "series", "n", "PSNR", "SSIM", *eps_heads, "wc/rand", "RMS HU", "verdict"]
    rows = [
        [
            v.method,
            v.series,
            str(v.slices),
            f"{v.psnr:.2f}",
            f"{v.ssim:.3f}",
            *(f"{r:.3f}" for r in v.rho_hat),
            f"{v.ratio:.2f}",
            f"{v.rms_hu:.1f}",
            "PASS" if v.passed else "FAIL",
        ]
        for v in result.series
    ]
    widths = [max(len(r[c]) for r in [heads, *rows]) for c in range(len(heads))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths, strict=True)) for r in rows]
    header = "  ".join(h.ljust(w) for h, w in zip(heads, widths, strict=True))
    worst = [f"  {v.method} / {v.series}: worst slice {v.worst_slice}" for v in result.series]
    return "\n".join([result.rule, header, *lines, *worst])
