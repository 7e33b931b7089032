"""The report of a compressive-sensing conditioning run (Raj et al. Sec. 4.1-4.3).

The CT report (:mod:`.build`) is about slices, methods and windows; this study has none of
those, so its page is built here from the run's ``metrics.json`` section ``cs_conditioning``
and the figures the stage wrote beside it. Nothing is recomputed.
"""

from __future__ import annotations

from pathlib import Path

from ctrobust.results import CSConditioningResult
from dicom_io.atomic import write_text_atomic

from .html import Markup, Section, bullets, figure, fixed, page, paragraph, table

FIGURES = {
    "singular_values.png": "Singular values of both matrices (the paper's Fig. 4c/f).",
    "rho_hat.png": "ρ̂(ε) of the four schemes for each matrix (the paper's Fig. 4a/d).",
    "gap.png": "Best other scheme's ρ̂ minus the adversarial one, against ε.",
}
NAMES = {"gaussian": "Gaussian", "dct": "DCT submatrix"}


def _matrix_table(result: CSConditioningResult) -> Markup:
    rows = [
        [
            NAMES.get(name, name),
            f"{m.shape[0]} × {m.shape[1]}",
            "" if m.p is None else str(m.p),
            fixed(m.sigma_max, 3),
            fixed(m.sigma_min, 3),
            fixed(m.condition_number, 2),
            fixed(m.y_norm_mean, 2),
        ]
        for name, m in result.matrices.items()
    ]
    headers = ["matrix", "m × n", "p", "σ max", "σ min", "κ", "mean ‖y‖₂ (test)"]
    return table(headers, rows, caption="The measurement matrices")


def _rho_table(result: CSConditioningResult) -> Markup:
    headers = ["matrix", "scheme", *[f"ε = {e:g}" for e in result.eps], "val MSE"]
    rows = []
    for name, m in result.matrices.items():
        for scheme, entry in m.schemes.items():
            values = [
                f"{v:.3f} ± {s:.3f}"
                for v, s in zip(entry.rho_hat, entry.rho_hat_stderr, strict=True)
            ]
            rows.append([NAMES.get(name, name), scheme, *values, fixed(entry.val_mse, 4)])
        rows.append([NAMES.get(name, name), "gap", *[fixed(g, 3) for g in m.gap], ""])
    return table(headers, rows, caption="ρ̂(ε) ± standard error over the test patches")


def render_cs(result: CSConditioningResult, figures: dict[str, bytes], name: str) -> str:
    """The report page of one CS run as an HTML string."""
    s = result.settings
    guide = bullets(
        [
            f"Patches {result.patch} × {result.patch} of CT slices in [−1, 1] (−1000..+1000 HU); "
            f"train, validation and test patients: "
            + "; ".join(f"{k}: {', '.join(v)}" for k, v in result.patients.items()),
            f"y = A x, m = {result.m}; f sees Aᵀy. Schemes trained {s['epochs']} epochs, "
            f"Adam(lr {s['lr']:g}, betas 0.5/0.999), batch {s['batch_size']}; adversarial "
            f"λ1 = {s['lam1']:g}, λ2 = {s['lam2']:g}, trained at ε = {s['train_eps']:g}.",
            f"ρ̂(ε): mean over test patches of the largest ‖f(y + δ) − x‖₂ with ‖δ‖₂ ≤ ε, found "
            f"by the CT attack's PGA ({s['pga_iterations']} steps).",
            "Gap: the lowest ρ̂ of plain, weight decay and Parseval minus the adversarial "
            "one; positive means the adversarially trained network is the more robust. The "
            "paper reports a roughly constant gap for the Gaussian matrix and one that grows "
            "with ε for the DCT submatrix.",
        ]
    )
    sections = [
        Section("setup", "Setup", guide),
        Section("matrices", "Matrices", _matrix_table(result)),
        Section("rho", "Worst-case error", _rho_table(result)),
    ]
    shown = [figure(figures[f], caption, f) for f, caption in FIGURES.items() if f in figures]
    for matrix in result.matrices:
        key = f"qualitative_{matrix}.png"
        if key in figures:
            caption = (
                f"{NAMES.get(matrix, matrix)}: true test patches, then the plain, Parseval and "
                "adversarial reconstructions under each ε's worst-case perturbation."
            )
            shown.append(figure(figures[key], caption, key))
    sections.append(Section("figures", "Figures", Markup("".join(shown))))
    intro = Markup(
        f"<h1>Compressive-sensing conditioning study: {name}</h1>"
        + paragraph(
            "Raj et al. 2020, Sec. 4.1-4.3, on CT patches: does adversarial G/f training help "
            "more under an ill-conditioned measurement matrix?",
            "note",
        )
    )
    return page(f"ctrobust CS study: {name}", intro, sections)


def write_cs_report(
    run_dir: Path, result: CSConditioningResult, figure_dir: Path, name: str
) -> Path:
    """Write RUN_DIR/report/index.html from the section and the PNGs in ``figure_dir``."""
    figures = {p.name: p.read_bytes() for p in sorted(Path(figure_dir).glob("*.png"))}
    out = Path(run_dir) / "report" / "index.html"
    write_text_atomic(out, render_cs(result, figures, name))
    return out
