"""Antun et al. (2020) instability tests: image-domain attack iterates r1 < r2 < r3, small
structural details, and more views.

Figures come from ``metrics["attack"]["image_domain"]`` with images from
``cache/attack/results.pt["image_domain"]``, and from ``metrics["instability"]`` with
optional images from ``cache/instability/results.pt["details"]`` (``names``, ``x``: truth with
the detail (K,1,N,N), ``detail``: the inserted detail (K,1,N,N), ``recons``: method ->
(K,1,N,N)).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .captions import psnr_note
from .figures import CurvePanel, Row, colours, curves, mixed_grid, window_grid
from .html import Markup, Section, figure, fixed, fmt, heading, paragraph, table
from .rundata import RunData
from .windows import SOFT_TISSUE, to_hu


def _iterate_figure(data: RunData, scheme: str, cached: dict[str, Any], m: dict[str, Any]) -> bytes:
    r, recon, x_gt = cached["r"], cached["recon"], cached["x_gt"][0]
    iterates = m.get("iterates", [])
    cols = ["no perturbation"] + [
        f"r{k + 1}: ‖r‖/‖x‖ = {fmt(_get(iterates, k, 'r_norm_relative'), 3)}, "
        f"error {fmt(_get(iterates, k, 'error'), 3)}"
        for k in range(r.shape[0])
    ]
    truth_row = [to_hu(x_gt)] + [to_hu(x_gt + r[k]) for k in range(r.shape[0])]
    clean = _clean_for(data, scheme, m.get("slice"))
    recon_row = [to_hu(clean) if clean is not None else None]
    recon_row += [to_hu(recon[k]) for k in range(recon.shape[0])]
    r_row = [None] + [1000.0 * r[k, 0].detach().cpu().double().numpy() for k in range(r.shape[0])]
    rows = [
        Row("image x + r\n(soft tissue)", truth_row, window=SOFT_TISSUE),
        Row(f"{scheme} output\nf(A(x + r))", recon_row, window=SOFT_TISSUE),
        Row("perturbation r", r_row, units="r (HU)"),
    ]
    return mixed_grid(rows, cols)


def _get(items: list[dict[str, Any]], k: int, key: str) -> Any:
    return items[k].get(key) if k < len(items) else None


def _clean_for(data: RunData, scheme: str, label: Any) -> torch.Tensor | None:
    """The scheme's clean reconstruction of the attacked slice, when the label identifies it."""
    labels = data.metrics.get("attack", {}).get("test_slices", [])
    if isinstance(label, int):
        return data.clean_recon(scheme, label)
    if label in labels:
        return data.clean_recon(scheme, labels.index(label))
    return None


def _image_domain(data: RunData, names_of) -> tuple[list[Markup], bool]:
    metrics = data.metrics.get("attack", {}).get("image_domain", {})
    cached = (data.attack or {}).get("image_domain", {})
    body: list[Markup] = []
    for scheme, m in metrics.items():
        iterates = m.get("iterates", [])
        body.append(heading(4, f"{data.method_label(scheme)}: {names_of(m.get('slice'))}"))
        rows = [
            [
                f"r{k + 1}",
                fmt(it.get("iteration")),
                fmt(it.get("r_norm"), 4),
                fmt(it.get("r_norm_relative"), 4),
                fmt(it.get("error"), 4),
            ]
            for k, it in enumerate(iterates)
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
            f"Q(r) = ½‖f(A(x + r)) − x‖² − (λ/2)‖r‖², λ = {fmt(m.get('lam'))}, "
            f"{fmt(m.get('n_iter'))} iterations; r1 < r2 < r3 are early-stopped iterates. "
            "Top: the image the measurement is simulated from (the perturbation is barely "
            "visible); middle: the network's reconstruction; bottom: r in HU. Soft-tissue "
            "window W400/L40."
        )
        g = m.get("gaussian_control")
        if g:
            caption += (
                f" Stability control: adding Gaussian noise of norm {fmt(g.get('noise_norm'), 3)}"
                f" (¼‖r1‖) to r1 changes the error from {fmt(g.get('error_r1'), 4)} to "
                f"{fmt(g.get('error_r1_plus_noise'), 4)}."
            )
        if scheme in cached:
            body.append(
                figure(_iterate_figure(data, scheme, cached[scheme], m), caption, "iterates")
            )
        else:
            body.append(paragraph(caption, "note"))
    return body, bool(metrics)


def _more_views(data: RunData) -> Markup | None:
    mv = data.metrics.get("instability", {}).get("more_views")
    if not mv or not mv.get("views") or not mv.get("methods"):
        return None
    views, methods = mv["views"], mv["methods"]
    palette = colours(len(methods))
    psnr = [
        (data.method_label(k), v["psnr"], c, "-")
        for (k, v), c in zip(methods.items(), palette, strict=True)
        if v.get("psnr")
    ]
    ssim = [
        (data.method_label(k), v["ssim"], c, "-")
        for (k, v), c in zip(methods.items(), palette, strict=True)
        if v.get("ssim")
    ]
    trained = data.metrics.get("data", {}).get("views")
    mark = {"marker_x": trained, "marker_label": f"training views ({trained})"} if trained else {}
    panels = [CurvePanel(views, psnr, "number of views", "PSNR (dB)", "PSNR", log_x=True, **mark)]
    if ssim:
        panels.append(
            CurvePanel(views, ssim, "number of views", "SSIM", "SSIM", log_x=True, **mark)
        )
    caption = (
        "More samples: every method reconstructs the same test slices from sinograms with "
        "more or fewer views (noise model as in the run). A stable method improves as views "
        "are added; a network trained at a fixed number of views may not. "
        f"{psnr_note(data)}"
    )
    rows = [
        [data.method_label(k)] + [fixed(p, 2) for p in v.get("psnr", [])]
        for k, v in methods.items()
    ]
    return Markup(
        figure(curves(panels), caption, "PSNR against number of views")
        + table(
            ["Method"] + [f"{v} views" for v in views],
            rows,
            table_id="more-views",
            caption="PSNR (dB) against the number of views.",
        )
    )


def _details(data: RunData) -> Markup | None:
    det = data.metrics.get("instability", {}).get("details")
    if not det or not det.get("methods"):
        return None
    names, methods = det.get("names", []), det["methods"]
    cfg = data.config.get("instability", {}).get("details", {})
    what = (
        f" Details {fmt(cfg.get('size_mm'), 3)} mm tall, contrast {fmt(cfg.get('contrast_hu'), 3)}"
        " HU."
        if cfg
        else ""
    )
    score_rows = [
        [data.method_label(m)] + [fmt(_item(v.get("score"), k), 3) for k in range(len(names))]
        for m, v in methods.items()
    ]
    psnr_rows = [
        [data.method_label(m)] + [fixed(_item(v.get("psnr_box"), k), 2) for k in range(len(names))]
        for m, v in methods.items()
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


def _item(values: list[Any] | None, k: int) -> Any:
    return values[k] if values is not None and k < len(values) else None


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
    tv = data.metrics.get("instability", {}).get("tv")
    if tv:
        body.append(
            paragraph(
                f"Classical reference: total-variation (TV) reconstruction with weight "
                f"λ = {fmt(tv.get('lam'))}, chosen among "
                f"{', '.join(fmt(c) for c in tv.get('candidates', []))} "
                f"on {tv.get('chosen_on', 'unstated data')}.",
                "note",
            )
        )
    if not body:
        return None
    return Section(
        "instability", "Instability tests (Antun et al.)", Markup("".join(body)), tuple(children)
    )
