"""The per-series verdict: the rule with its thresholds, the table and one sentence per
reconstructor and series, from the ``verdict`` section of metrics.json (ctrobust.verdict)."""

from __future__ import annotations

import html

from ctrobust.verdict import SeriesVerdict, VerdictResult

from .captions import eps_text
from .html import Markup, Section, esc, fixed, paragraph, table
from .provenance import Pseudonyms
from .rundata import RunData


def report_sentence(v: SeriesVerdict, result: VerdictResult, names: Pseudonyms) -> str:
    """The verdict sentence of metrics.json with the report's pseudonyms for series and slice."""
    return v.sentence.replace(
        f"series {v.series}", f"series {names.series_label(v.series)}", 1
    ).replace(f"worst slice {v.worst_slice}", f"worst slice {names.slice_label(v.worst_slice)}")


def worst_slice_indices(data: RunData) -> list[int]:
    """Report indices of every verdict's worst slice, so the report shows their panels."""
    verdict, attack = data.metrics.verdict, data.metrics.attack
    if verdict is None or attack is None:
        return []
    labels = list(attack.test_slices)
    return sorted({labels.index(v.worst_slice) for v in verdict.series if v.worst_slice in labels})


def verdict_section(data: RunData, names: Pseudonyms, shown: dict[int, str]) -> Section | None:
    """The verdict table and sentences, first thing after the header."""
    result = data.metrics.verdict
    if result is None:
        return None
    labels = list(data.metrics.attack.test_slices) if data.metrics.attack else []

    def worst(v: SeriesVerdict) -> Markup:
        text = esc(names.slice_label(v.worst_slice))
        t = labels.index(v.worst_slice) if v.worst_slice in labels else None
        return Markup(f'<a href="#{shown[t]}">{text}</a>') if t in shown else Markup(text)

    headers = ["Method", "Series", "Slices", "Clean PSNR (dB)", "Clean SSIM"]
    headers += [f"ρ̂ at ε = {eps_text(data, e)}" for e in result.eps]
    headers += ["Worst case / random at ε = noise", "RMS change (HU)", "Worst slice", "Verdict"]
    rows = [
        [
            v.label,
            names.series_label(v.series),
            str(v.slices),
            fixed(v.psnr, 2),
            fixed(v.ssim, 3),
            *(fixed(r, 3) for r in v.rho_hat),
            fixed(v.ratio, 2),
            fixed(v.rms_hu, 1),
            worst(v),
            Markup(
                f'<strong class="{"pass" if v.passed else "fail"}">'
                f"{'PASS' if v.passed else 'FAIL'}</strong>"
            ),
        ]
        for v in result.series
    ]
    # data-index: the row of metrics.verdict.series (the series key itself names a patient)
    sentences = "".join(
        f'<li class="verdict" data-method="{html.escape(v.method, quote=True)}" '
        f'data-index="{k}">{esc(report_sentence(v, result, names))}</li>'
        for k, v in enumerate(result.series)
    )
    body = [
        paragraph(result.rule),
        paragraph(
            f"Thresholds (config keys): verdict.k_ratio = {result.k_ratio:g}, "
            f"verdict.max_rms_hu = {result.max_rms_hu:g} HU. The noise norm is that of the "
            "simulated low-dose noise of each slice, so the verdict asks whether a perturbation "
            "no larger than the noise already in the data can do much more harm than that "
            "noise does.",
            "note",
        ),
        table(headers, rows, table_id="verdict-table", caption="Per-series verdict"),
        Markup(f'<ul id="verdict-sentences">{sentences}</ul>'),
    ]
    return Section("verdict", "Verdict", Markup("".join(body)))
