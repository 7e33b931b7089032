"""Batch summary: models, clean quality, robustness rho-hat(eps) and the worst slices.

rho-hat(eps) (Raj et al. 2020, eq. 8) is the mean over the attacked test slices of the
worst-case reconstruction error ||f(y + delta) - x||_2 with ||delta||_2 <= eps, in relative
attenuation over the whole n x n image; 1000 rho-hat / n is the same error as an RMS in HU.
"""

from __future__ import annotations

from ctrobust.results import MethodAttack

from .captions import attack_caption, eps_axis, psnr_note
from .figures import CurvePanel, colours, curves
from .html import (
    Markup,
    Section,
    bullets,
    esc,
    figure,
    fixed,
    fmt,
    heading,
    paragraph,
    table,
)
from .provenance import Pseudonyms
from .rundata import RunData


def _models_table(data: RunData) -> Markup:
    training = data.metrics.training or {}
    if not training:
        return Markup("")
    rows = []
    for name, t in training.items():
        rows.append(
            [
                name,
                data.schemes.get(name, "–").replace("_", " "),
                fmt(t.epochs),
                fixed(t.final.get("val_psnr"), 2),
                fixed(t.final.get("val_ssim"), 3),
            ]
        )
    return table(
        ["Network", "Training scheme", "Epochs", "Val PSNR (dB)", "Val SSIM"],
        rows,
        caption="Trained reconstruction networks (FBPConvNet: U-Net on the FBP image).",
    )


def _clean_table(data: RunData) -> Markup:
    clean = data.metrics.clean
    if not clean:
        return Markup("")
    rows = []
    for split, methods in clean.splits().items():
        for method, m in methods.items():
            p, s = m.psnr, m.ssim
            rows.append(
                [
                    split,
                    data.method_label(method),
                    f"{fixed(p.mean, 2)} ± {fixed(p.std, 2)}",
                    f"{fixed(p.min, 2)} – {fixed(p.max, 2)}",
                    f"{fixed(s.mean, 3)} ± {fixed(s.std, 3)}",
                    f"{fixed(m.psnr_source.mean, 2)} ± {fixed(m.psnr_source.std, 2)}",
                    f"{fixed(m.ssim_source.mean, 3)} ± {fixed(m.ssim_source.std, 3)}",
                ]
            )
    caption = (
        "Clean (unattacked) reconstruction quality, mean ± SD over slices, against the FBP "
        "ground truth (the paper's reference, first three columns) and against the source image "
        f"the simulation started from (last two). {psnr_note(data)}"
    )
    return table(
        [
            "Split",
            "Method",
            "PSNR (dB)",
            "PSNR range (dB)",
            "SSIM",
            "PSNR vs source (dB)",
            "SSIM vs source",
        ],
        rows,
        table_id="clean-table",
        caption=caption,
    )


def _grid_n(data: RunData) -> int | None:
    return data.metrics.data.n if data.metrics.data else None


def rho_table(data: RunData, method: str, m: MethodAttack) -> Markup:
    """ε, ‖δ‖, ρ̂ worst and random, RMS HU, attacked PSNR/SSIM of one method (id rho-<method>)."""
    label, scale = eps_axis(data.metrics.attack)
    n = _grid_n(data)
    rows = []
    for k, eps in enumerate(m.eps):
        rho = m.rho_hat[k]
        rows.append(
            [
                fmt(eps * scale),
                fmt(m.eps_abs_mean[k]),
                fmt(m.eps_over_noise[k], 3),
                fmt(rho),
                fmt(m.rho_hat_random[k]),
                fmt(m.rho_hat_source[k]),
                fixed(1000 * rho / n, 1) if n else "–",
                fixed(m.psnr[k], 2),
                fixed(m.ssim[k], 3),
                fixed(sum(m.iterations_per_slice[k]) / len(m.iterations_per_slice[k]), 0),
                *(_certificate_cells(m, k) if m.certificate else []),
            ]
        )
    headers = [
        label,
        "mean ‖δ‖₂ (absolute)",
        "ε / noise norm",
        "ρ̂ worst case",
        "ρ̂ random δ",
        "ρ̂ vs source image",
        "worst case RMS error (HU)",
        "PSNR attacked (dB)",
        "SSIM attacked",
        "PGA steps (mean)",
        *(
            ["exact worst case (upper bound)", "PGA / exact (lowest slice)"]
            if m.certificate
            else []
        ),
    ]
    caption = data.method_label(method)
    if m.certificate:
        caption += (
            ": linear, so the exact worst case is certified (trust-region subproblem by Lanczos "
            "on RᵀR; the bound is reached by a feasible δ to "
            f"{fmt(_certificate_gap(m), 2)} relative)"
        )
    return table(headers, rows, table_id=f"rho-{method}", caption=caption)


def _certificate_cells(m: MethodAttack, k: int) -> list[str]:
    """The certified worst case and PGA's share of it (mean and lowest slice) at eps k."""
    cert = m.certificate
    return [
        fmt(cert.upper[k]),
        fixed(cert.pga_over_upper[k], 4),
        fixed(cert.pga_over_upper_min[k], 4),
    ]


def _certificate_gap(m: MethodAttack) -> float:
    """Largest relative gap between the certificate's upper bound and the attained value."""
    cert = m.certificate
    return max(up / low - 1 for up, low in zip(cert.upper, cert.attained, strict=True))


def _glance(data: RunData, models: dict[str, MethodAttack]) -> Markup:
    _, scale = eps_axis(data.metrics.attack)
    n = _grid_n(data)
    items = []
    for method, m in models.items():
        k = len(m.eps) - 1
        rho, rnd = m.rho_hat[k], m.rho_hat_random[k]
        text = f"{data.method_label(method)}: at ε = {fmt(m.eps[k] * scale, 3)}"
        text += "% of ‖y‖₂" if scale == 100.0 else " (absolute)"
        text += f", worst-case error ρ̂ = {fmt(rho, 3)}"
        if n:
            text += f" (RMS {fixed(1000 * rho / n, 1)} HU)"
        if rnd:
            text += f", {fmt(rho / rnd, 3)} × the error under random noise of the same size"
        items.append(text + ".")
    return bullets(items) if items else Markup("")


def rho_figure(data: RunData, models: dict[str, MethodAttack]) -> bytes:
    """ρ̂ vs ε (worst case solid, random dashed) and attacked PSNR vs ε, one colour per model."""
    label, scale = eps_axis(data.metrics.attack)
    names = list(models)
    rho_series, psnr_series = [], []
    for colour, method in zip(colours(len(names)), names, strict=True):
        m = models[method]
        name = data.method_label(method)
        rho_series.append((f"{name}, worst case", m.rho_hat, colour, "-"))
        rho_series.append((f"{name}, random", m.rho_hat_random, colour, "--"))
        psnr_series.append((name, m.psnr, colour, "-"))
    eps = [e * scale for e in models[names[0]].eps]
    values = [v for _, vs, _, _ in rho_series for v in vs if v and v > 0]
    log_y = bool(values) and max(values) / min(values) > 30
    panels = [
        CurvePanel(eps, rho_series, label, "ρ̂ = mean ‖f(y+δ) − x‖₂", "Robustness ρ̂(ε)", log_y=log_y)
    ]
    if psnr_series:
        panels.append(
            CurvePanel(
                eps, psnr_series, label, "PSNR under worst-case δ (dB)", "Attacked image quality"
            )
        )
    return curves(panels)


def _consistent(models: dict[str, MethodAttack]) -> dict[str, MethodAttack]:
    """Models on the eps grid of the first one (for one shared plot)."""
    if not models:
        return {}
    grid = next(iter(models.values())).eps
    return {k: v for k, v in models.items() if v.eps == grid}


def _worst_slices(data: RunData, names: Pseudonyms, shown: dict[int, str], count: int = 3):
    clean, attack = data.metrics.clean, data.metrics.attack
    test = (clean.test if clean else None) or {}
    attack_models = attack.models if attack else {}
    methods = list(dict.fromkeys([*test, *attack_models]))
    rows = []
    for method in methods:
        per_slice = (test[method].psnr_per_slice if method in test else None) or []
        order = data.test_order()
        low = sorted(range(len(per_slice)), key=lambda p: per_slice[p])[:count]
        low_text = Markup(
            "; ".join(
                Markup(
                    f"{_slice_ref(data, names, shown, order.index(p) if p in order else p)} "
                    f"({fixed(per_slice[p], 2)} dB)"
                )
                for p in low
            )
        )
        deltas = attack_models[method].delta_max_per_slice if method in attack_models else []
        high_text = "–"
        if deltas:
            last = deltas[-1]
            high = sorted(range(len(last)), key=lambda t: -last[t])[:count]
            high_text = Markup(
                "; ".join(
                    Markup(f"{_slice_ref(data, names, shown, t)} (Δ = {fmt(last[t], 3)})")
                    for t in high
                )
            )
        rows.append([data.method_label(method), low_text or "–", high_text])
    if not rows:
        return Markup("")
    eps = attack_models and next(iter(attack_models.values())).eps
    _, scale = eps_axis(attack) if eps else ("", 1.0)
    unit = "% of ‖y‖₂" if scale == 100.0 else " (absolute)"
    eps_text = f" at the largest ε = {fmt(eps[-1] * scale, 3)}{unit}" if eps else ""
    caption = (
        "Worst test slices: lowest clean PSNR over the whole test split, and largest "
        f"worst-case error Δmax = ‖f(y+δ) − x‖₂{eps_text} over the attacked slices."
    )
    return table(
        ["Method", "Lowest clean PSNR", "Largest Δmax under attack"], rows, caption=caption
    )


def _slice_ref(data: RunData, names: Pseudonyms, shown: dict[int, str], t: int) -> Markup:
    """A test slice's short name, linked to its section when the report shows it."""
    text = esc(names.slice_label(data.test_label(t)))
    return Markup(f'<a href="#{shown[t]}">{text}</a>') if t in shown else Markup(text)


def summary_section(data: RunData, names: Pseudonyms, shown: dict[int, str]) -> Section | None:
    """Models, clean table, ρ̂ tables and curves, worst slices."""
    body: list[Markup] = [_models_table(data), _clean_table(data)]
    children: list[tuple[str, str]] = []
    attack = data.metrics.attack
    models = attack.models if attack else {}
    if attack and models:
        body.append(heading(3, "Robustness to worst-case measurement perturbations", "robustness"))
        children.append(("robustness", "Robustness ρ̂(ε)"))
        body.append(
            paragraph(
                "ρ̂(ε) is the average reconstruction error when an adversary may change the "
                "measured sinogram by at most ε (ℓ2 norm). Lower is more robust. A method whose "
                "worst-case error is far above its error under random noise of the same size is "
                "unstable in a way ordinary noise does not reveal."
            )
        )
        body.append(_glance(data, models))
        plotted = _consistent(models)
        if plotted:
            body.append(
                figure(
                    rho_figure(data, plotted),
                    f"Left: ρ̂(ε), mean over {len(attack.test_slices)} attacked test "
                    "slices of ‖f(y+δ) − x‖₂ in relative attenuation (solid: worst case found by "
                    "the attack; dashed: random δ of the same norm). Right: PSNR of the attacked "
                    f"reconstruction. {attack_caption(data, full=True)} {psnr_note(data)}",
                    "rho-hat against epsilon for every model",
                )
            )
        for method, m in models.items():
            body.append(rho_table(data, method, m))
        body.append(
            paragraph(
                "RMS error (HU) = 1000 ρ̂ / n on the n × n grid; PSNR/SSIM of the attacked "
                "reconstruction against the ground truth, averaged over the attacked slices.",
                "note",
            )
        )
    worst = _worst_slices(data, names, shown)
    if worst:
        body.append(heading(3, "Worst slices", "worst"))
        children.append(("worst", "Worst slices"))
        body.append(worst)
    if not any(body):
        return None
    return Section("summary", "Batch summary", Markup("".join(body)), tuple(children))
