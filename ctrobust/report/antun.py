"""Antun et al. (2020) instability tests: image-domain attack iterates r1 < r2 < r3, small
structural details, and more views.

Figures come from the attack section's ``image_domain`` with images from
``cache/attack/results.pt["image_domain"]``, and from the instability section with
optional images from ``cache/instability/results.pt["details"]`` (``names``, ``x``: truth with
the detail (K,1,N,N), ``detail``: the inserted detail (K,1,N,N), ``recons``: method ->
(K,1,N,N)).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from ctrobust.results import ImageDomainResult, InstabilityResult

from .captions import psnr_note
from .figures import CurvePanel, Row, colours, curves, mixed_grid, window_grid
from .html import Markup, Section, figure, fixed, fmt, heading, paragraph, table
from .rundata import RunData
from .windows import SOFT_TISSUE, to_hu


def _iterate_figure(
    data: RunData, scheme: str, cached: dict[str, Any], m: ImageDomainResult
) -> bytes:
    r, recon, x_gt = cached["r"], cached["recon"], cached["x_gt"][0]
    cols = ["no perturbation"] + [
        f"r{k + 1}: ‖r‖/‖x‖ = {fmt(it.r_norm_relative, 3)}, error {fmt(it.error, 3)}"
        for k, it in zip(range(r.shape[0]), m.iterates, strict=False)
    ]
    truth_row = [to_hu(x_gt)] + [to_hu(x_gt + r[k]) for k in range(r.shape[0])]
    clean = _clean_for(data, scheme, m.slice)
    recon_row = [to_hu(clean) if clean is not None else None]
    recon_row += [to_hu(recon[k]) for k in range(recon.shape[0])]
    r_row = [None] + [1000.0 * r[k, 0].detach().cpu().double().numpy() for k in range(r.shape[0])]
    rows = [
        Row("image x + r\n(soft tissue)", truth_row, window=SOFT_TISSUE),
        Row(f"{scheme} output\nf(A(x + r))", recon_row, window=SOFT_TISSUE),
        Row("perturbation r", r_row, units="r (HU)"),
    ]
    return mixed_grid(rows, cols)


def _clean_for(data: RunData, scheme: str, label: Any) -> torch.Tensor | None:
    """The scheme's clean reconstruction of the attacked slice, when the label identifies it."""
    labels = data.metrics.attack.test_slices if data.metrics.attack else []
    if isinstance(label, int):
        return data.clean_recon(scheme, label)
    if label in labels:
        return data.clean_recon(scheme, labels.index(label))
    return None


def _image_domain(data: RunData, names_of) -> tuple[list[Markup], bool]:
    metrics = data.metrics.attack.image_domain if data.metrics.attack else {}
    cached = (data.attack or {}).get("image_domain", {})
    body: list[Markup] = []
    for scheme, m in metrics.items():
        body.append(heading(4, f"{data.method_label(scheme)}: {names_of(m.slice)}"))
        rows = [
            [
                f"r{k + 1}",
                fmt(it.iteration) if it.reached else "not reached",
                fmt(it.r_norm, 4),
                fmt(it.r_norm_relative, 4),
                fmt(it.error, 4),
            ]
            for k, it in enumerate(m.iterates)
        ]
        body.append(
            table(
                ["Iterate", "Iteration", "‖r‖₂", "‖r‖₂ / ‖x‖₂", "Error ‖f(A(x+r)) − x‖₂"],
                rows,
                table_id=f"iterates-{scheme}",
            )
        )
        caption = (
            f"Image-domain attack (Antun et al.): gradient ascent with momentum on "
            f"Q(r) = ½‖f(A(x + r)) − x‖² − (λ/2)‖r‖², λ = {fmt(m.lam)}, "
            f"{fmt(m.n_iter)} iterations; r1 < r2 < r3 are early-stopped iterates. "
            "Top: the image the measurement is simulated from (the perturbation is barely "
            "visible); middle: the network's reconstruction; bottom: r in HU. Soft-tissue "
            "window W400/L40."
        )
        g = m.gaussian_control
        caption += (
            f" Stability control (Antun Fig. 2): Gaussian noise e drawn on the sinogram and "
            f"back-projected, v = Aᵀe, scaled to ¼‖r1‖ = {fmt(g.noise_norm, 3)}; adding it"
            f" to r1 changes the error from {fmt(g.error_r1, 4)} to "
            f"{fmt(g.error_r1_plus_noise, 4)}."
        )
        if scheme in cached:
            body.append(
                figure(_iterate_figure(data, scheme, cached[scheme], m), caption, "iterates")
            )
        else:
            body.append(paragraph(caption, "note"))
    return body, bool(metrics)


def _more_views(data: RunData) -> Markup | None:
    instability = data.metrics.instability
    if instability is None or not instability.more_views.methods:
        return None
    views, methods = instability.more_views.views, instability.more_views.methods
    palette = colours(len(methods))
    psnr = [
        (data.method_label(k), v.psnr, c, "-")
        for (k, v), c in zip(methods.items(), palette, strict=True)
    ]
    ssim = [
        (data.method_label(k), v.ssim, c, "-")
        for (k, v), c in zip(methods.items(), palette, strict=True)
    ]
    trained = data.metrics.data.views if data.metrics.data else None
    mark = {"marker_x": trained, "marker_label": f"training views ({trained})"} if trained else {}
    panels = [
        CurvePanel(views, psnr, "number of views", "PSNR (dB)", "PSNR", log_x=True, **mark),
        CurvePanel(views, ssim, "number of views", "SSIM", "SSIM", log_x=True, **mark),
    ]
    caption = (
        "More samples: every method reconstructs the same test slices from sinograms with "
        "more or fewer views (noise model as in the run). A stable method improves as views "
        "are added; a network trained at a fixed number of views may not. "
        f"{psnr_note(data)}"
    )
    rows = [[data.method_label(k)] + [fixed(p, 2) for p in v.psnr] for k, v in methods.items()]
    parts = figure(curves(panels), caption, "PSNR against number of views") + table(
        ["Method"] + [f"{v} views" for v in views],
        rows,
        table_id="more-views",
        caption="PSNR (dB) against the number of views, reference: the FBP ground truth.",
    )
    source = [
        [data.method_label(k)] + [fixed(p, 2) for p in v.psnr_source]
        for k, v in methods.items()
        if v.psnr_source is not None
    ]
    if source:
        parts += table(
            ["Method"] + [f"{v} views" for v in views],
            source,
            table_id="more-views-source",
            caption="PSNR (dB) against the number of views, reference: the source image the "
            "simulation started from (the FBP ground truth is itself blurred at small n).",
        )
    return Markup(parts)


def _details(data: RunData) -> Markup | None:
    instability = data.metrics.instability
    if instability is None or not instability.details.methods:
        return None
    det = instability.details
    names, methods = det.names, det.methods
    what = f" Details {fmt(det.size_mm, 3)} mm tall, contrast {fmt(det.contrast_hu, 3)} HU."
    score_rows = [[data.method_label(m)] + [fmt(v, 3) for v in d.score] for m, d in methods.items()]
    psnr_rows = [
        [data.method_label(m)] + [fixed(v, 2) for v in d.psnr_box] for m, d in methods.items()
    ]
    parts = [
        table(
            ["Method", *names],
            score_rows,
            table_id="details-score",
            caption="Recovery score ⟨f(y_d) − f(y), d⟩ / ‖d‖² of each inserted detail d (1: the "
            f"detail comes through at full contrast, 0: erased).{what}",
        ),
        table(
            ["Method", *names],
            psnr_rows,
            table_id="details-psnr",
            caption="PSNR (dB) inside each detail's bounding box, against the truth with the "
            f"detail. {psnr_note(data)}",
        ),
    ]
    images = (data.instability or {}).get("details")
    if images and "x" in images and images.get("recons"):
        parts.append(_details_figure(data, images, what))
    return Markup("".join(parts))


def _crop_box(mask: torch.Tensor, n: int) -> tuple[slice, slice]:
    """Square box around a detail mask with a margin as large as the detail."""
    rows, cols = np.nonzero(mask.detach().cpu().numpy().reshape(n, n) > 0.05)
    if rows.size == 0:
        return slice(0, n), slice(0, n)
    size = max(rows.max() - rows.min(), cols.max() - cols.min()) + 1
    half = min(n // 2, max(16, size))
    cy, cx = (rows.min() + rows.max()) // 2, (cols.min() + cols.max()) // 2
    top, left = int(np.clip(cy - half, 0, n - 2 * half)), int(np.clip(cx - half, 0, n - 2 * half))
    return slice(top, top + 2 * half), slice(left, left + 2 * half)


def _details_figure(data: RunData, images: dict[str, Any], what: str) -> Markup:
    x, recons = images["x"], images["recons"]
    names = images.get("names") or [f"detail {k + 1}" for k in range(x.shape[0])]
    n = x.shape[-1]
    rows = []
    for k in range(x.shape[0]):
        box = (slice(0, n), slice(0, n))
        if images.get("detail") is not None:
            box = _crop_box(images["detail"][k], n)
        row = [to_hu(x[k])[box]] + [to_hu(r[k])[box] for r in recons.values()]
        rows.append(row)
    cols = ["truth with detail"] + [data.method_label(m) for m in recons]
    png = window_grid(rows, [str(v) for v in names], cols, SOFT_TISSUE)
    cropped = " Cropped around each detail." if images.get("detail") is not None else ""
    return figure(
        png,
        f"Each method reconstructs a slice with an inserted detail; soft-tissue window "
        f"W400/L40.{cropped}{what}",
        "structural details",
    )


def _references(inst: InstabilityResult) -> Markup:
    """How TV's weight and SIRT's iteration count were chosen, and which TV is reported."""
    tv = inst.tv
    rows = [
        [
            fmt(c.lam),
            fixed(c.psnr_mean, 2),
            fmt(c.iterations),
            fmt(c.gap, 2),
            "yes" if c.converged else "no",
            "chosen" if c.lam == tv.lam else "",
        ]
        for c in tv.candidates
    ]
    edge = (
        " The chosen weight is at an end of the grid: a wider grid may find a better one."
        if tv.at_edge_of_grid
        else ""
    )
    curve = inst.sirt.psnr_by_iteration
    return Markup(
        table(
            [
                "TV weight (β when noise-scaled)",
                "Mean PSNR (dB)",
                "Iterations",
                "Final gap",
                "Converged",
                "",
            ],
            rows,
            table_id="tv-weight",
            caption=f"Classical reference: total-variation (TV) reconstruction, weight chosen "
            f"on {tv.chosen_on} by PSNR. Stopping rule (the same for every TV in this report, "
            f"the attacked one included): {tv.stopping}. View-count rule: {tv.view_rule}. "
            f"Weights λ on the test slices: {', '.join(fmt(w, 3) for w in tv.test_weights)}."
            f"{edge}",
        )
        + table(
            ["SIRT iterations", "Mean PSNR (dB) at that count", "PSNR after the last searched"],
            [[fmt(inst.sirt.iterations), fixed(max(curve), 2), fixed(curve[-1], 2)]],
            table_id="sirt-iterations",
            caption=f"SIRT's iteration count: its semi-convergence point on "
            f"{inst.sirt.chosen_on}, searched up to {len(curve)} iterations.",
        )
    )


def _tv_attack(inst: InstabilityResult) -> Markup | None:
    att = inst.tv_attack
    if att is None:
        return None
    rows = [[fmt(e, 3), fixed(r, 3)] for e, r in zip(att.eps, att.rho_hat, strict=True)]
    return table(
        ["ε (relative to ‖y‖)", "ρ̂ = ‖TV(y + δ) − x‖₂"],
        rows,
        table_id="tv-attack",
        caption=f"Worst-case error of TV under the attack stage's PGA ({att.pga_iterations} "
        f"iterations, ball centred on {att.center}, {att.slices} slice(s)); TV ran "
        f"{min(att.tv_iterations)}-{max(att.tv_iterations)} primal-dual iterations at the "
        f"attacked points. {att.note}.",
    )


def _verdict(flag: bool | None, expected: bool | None) -> str:
    """The verdict, and whether it is the one a control is there to produce."""
    if flag is None:
        return "not run"
    word = "flagged" if flag else "passes"
    if expected is None:
        return word
    return f"{word} ({'as expected' if flag == expected else 'NOT as expected'})"


def _controls(data: RunData, inst: InstabilityResult) -> Markup | None:
    ctl = inst.controls
    if ctl is None:
        return None
    rows = [
        [
            data.method_label(name),
            m.role,
            "—" if m.amplification is None else fmt(m.amplification, 3),
            _verdict(m.flagged["tiny_perturbation"], m.expected.get("tiny_perturbation")),
            "—" if m.score_min is None else fmt(m.score_min, 3),
            _verdict(m.flagged["structural_change"], m.expected.get("structural_change")),
            "—" if m.drop_db is None else fixed(m.drop_db, 2),
            _verdict(m.flagged["more_samples"], m.expected.get("more_samples")),
        ]
        for name, m in ctl.methods.items()
    ]
    available = "; ".join(
        f"{test.replace('_', ' ')}: {what}" for test, what in ctl.available.items()
    )
    return table(
        [
            "Method",
            "Role",
            "Amplification κ",
            "Tiny perturbation",
            "Lowest detail score",
            "Structural change",
            "PSNR drop (dB)",
            "More samples",
        ],
        rows,
        table_id="controls",
        caption=f"Antun's three tests on the methods under test and on controls of known "
        f"(in)stability, so a clean verdict can be told from a blind test. Controls available: "
        f"{available}. {ctl.note}",
    )


def instability_section(data: RunData, names_of) -> Section | None:
    """Image-domain iterates, structural details, more views, classical reference settings."""
    body: list[Markup] = []
    children: list[tuple[str, str]] = []
    iterates, present = _image_domain(data, names_of)
    if present:
        body.append(heading(3, "Image-domain attack iterates", "iterates"))
        children.append(("iterates", "Image-domain attack iterates"))
        body.extend(iterates)
    details = _details(data)
    if details is not None:
        body.append(heading(3, "Small structural changes", "details"))
        children.append(("details", "Small structural changes"))
        body.append(details)
    more = _more_views(data)
    if more is not None:
        body.append(heading(3, "More views", "more-views-section"))
        children.append(("more-views-section", "More views"))
        body.append(more)
    inst = data.metrics.instability
    if inst is not None:
        controls = _controls(data, inst)
        if controls is not None:
            body.append(heading(3, "Controls: can the tests tell?", "controls-section"))
            children.append(("controls-section", "Controls"))
            body.append(controls)
        body.append(_references(inst))
        attack = _tv_attack(inst)
        if attack is not None:
            body.append(attack)
    if not body:
        return None
    return Section(
        "instability", "Instability tests (Antun et al.)", Markup("".join(body)), tuple(children)
    )
