"""Per test slice: every method clean and attacked in three CT windows, difference maps,
and the sinogram perturbation that did it.

Images come straight from the caches: ground truth from ``cache/simulate/data.pt``, clean
reconstructions from ``cache/evaluate/test_recons.pt``, attacked reconstructions and
perturbations from ``cache/attack/results.pt``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from .captions import attack_caption, eps_text, psnr_note
from .figures import diverging_grid, diverging_limits, window_grid
from .html import Markup, Section, figure, fixed, fmt, heading, paragraph, table
from .provenance import Pseudonyms
from .rundata import RunData
from .windows import WINDOWS, difference_hu, to_hu

DEFAULT_MAX_SLICES = 3


def slice_anchor(t: int) -> str:
    return f"slice-{t + 1}"


def shown_slices(data: RunData, max_slices: int = DEFAULT_MAX_SLICES) -> dict[int, str]:
    """Test slices that get their own panels: the first attacked ones (or first test ones)."""
    if data.simulated is None:
        return {}
    if data.attack is not None:
        count = len(data.attack.get("slices", []))
    elif data.test_recons is not None:
        count = len(data.test_indices())
    else:
        return {}
    return {t: slice_anchor(t) for t in range(min(count, max_slices))}


def _methods(data: RunData) -> list[str]:
    """Classical methods first, then networks; everything with a clean or attacked image."""
    names = list((data.test_recons or {}).keys())
    names += [m for m in (data.attack or {}).get("models", {}) if m not in names]
    return sorted(names, key=lambda m: (data.is_network(m), names.index(m)))


def _attacked(data: RunData, method: str, e: int, t: int) -> torch.Tensor | None:
    models = (data.attack or {}).get("models", {})
    if method not in models:
        return None
    attacked = models[method]["attacked"]
    return attacked[e, t, 0] if e < attacked.shape[0] and t < attacked.shape[1] else None


def _delta(data: RunData, method: str, e: int, t: int) -> np.ndarray | None:
    models = (data.attack or {}).get("models", {})
    if method not in models:
        return None
    delta = models[method]["delta"]
    if e >= delta.shape[0] or t >= delta.shape[1]:
        return None
    return delta[e, t, 0].detach().cpu().double().numpy()


def _eps_labels(data: RunData) -> list[str]:
    """Column labels of the attacked images."""
    return [f"attacked, ε = {eps_text(data, e)}" for e in (data.attack or {}).get("eps", [])]


def _slice_table(data: RunData, methods: list[str], t: int) -> Markup:
    clean, attack = data.metrics.clean, data.metrics.attack
    test = (clean.test if clean else None) or {}
    attack_models = attack.models if attack else {}
    eps = (data.attack or {}).get("eps", [])
    headers = ["Method", "Clean PSNR (dB)"] + [f"Δmax at ε = {eps_text(data, e)}" for e in eps]
    rows = []
    for method in methods:
        per_slice = (test[method].psnr_per_slice if method in test else None) or []
        deltas = attack_models[method].delta_max_per_slice if method in attack_models else []
        p = data.position(t)
        row = [data.method_label(method), fixed(per_slice[p], 2) if p < len(per_slice) else "–"]
        row += [fmt(d[t], 4) if t < len(d) else "–" for d in deltas[: len(eps)]]
        row += ["–"] * (len(headers) - len(row))
        rows.append(row)
    return table(
        headers,
        rows,
        caption="This slice: clean PSNR against the ground truth"
        + (
            ", and worst-case error Δmax = ‖f(y+δ) − x‖₂ (relative attenuation) at each ε"
            if eps
            else ""
        )
        + f". {psnr_note(data)}",
    )


def _window_figures(data: RunData, methods: list[str], t: int, gt: torch.Tensor) -> list[Markup]:
    """One figure per CT window: a row per method (ground truth, clean, attacked at each ε),
    or, without an attack, one row: the ground truth and every method side by side."""
    eps = (data.attack or {}).get("eps", [])
    cleans = {m: data.clean_recon(m, t) for m in methods}
    if eps:
        cols = ["ground truth", "clean"] + _eps_labels(data)
        labels = [_short(data, m) for m in methods]
        rows = [
            [to_hu(gt), _hu_or_none(cleans[m])]
            + [_hu_or_none(_attacked(data, m, e, t)) for e in range(len(eps))]
            for m in methods
        ]
        what = (
            "Each row: the ground truth, the method on the clean measurement, and the method "
            "on the measurement plus the worst-case perturbation δ found for it at each ε. "
            + attack_caption(data, t)
        )
    else:
        cols = ["ground truth"] + [data.method_label(m) for m in methods]
        labels = [""]
        rows = [[to_hu(gt)] + [_hu_or_none(cleans[m]) for m in methods]]
        what = "The ground truth and each method's reconstruction of the clean measurement."
    figures = []
    for window in WINDOWS:
        caption = (
            f"{window.name.capitalize()} window W{window.width:g}/L{window.level:g} HU "
            f"(black {window.low:g} HU, white {window.high:g} HU; HU = 1000 (x − 1)). {what}"
        )
        png = window_grid(rows, labels, cols, window)
        figures.append(figure(png, caption, f"{window.name} window, all methods"))
    return figures


def _hu_or_none(image: torch.Tensor | None) -> np.ndarray | None:
    return to_hu(image) if image is not None else None


def _short(data: RunData, method: str) -> str:
    """Row label short enough for the side of a panel: name, then 'network, <scheme>'."""
    if not data.is_network(method):
        return data.method_label(method)
    if method not in data.schemes:
        return f"{method}\nexternal"
    kind = data.schemes[method].replace("_", " ")
    return f"{method}\nnetwork" + (f", {kind}" if kind and kind != method else "")


def _difference_figure(
    data: RunData, methods: list[str], t: int, gt: torch.Tensor
) -> Markup | None:
    """Clean − ground truth and attacked − clean in HU, a row per method (one row of
    clean errors when there is no attack)."""
    eps = (data.attack or {}).get("eps", [])
    cleans = {m: data.clean_recon(m, t) for m in methods}
    errors = {m: difference_hu(c, gt) if c is not None else None for m, c in cleans.items()}
    if all(v is None for v in errors.values()):
        return None
    scale_note = (
        "Difference maps in HU (red: brighter, blue: darker). Each column has its own "
        "symmetric colour scale, shared across methods and set at the largest 99.9th "
        "percentile of |difference| in that column; its limits in HU are written on its "
        "colour bar, so a small ε is not drawn blank on the scale of a large one. "
    )
    if not eps:
        png = diverging_grid(
            [[errors[m] for m in methods]],
            [""],
            [f"{data.method_label(m)} − ground truth" for m in methods],
            [0] * len(methods),
            ["error of the clean reconstruction (HU)"],
        )
        return figure(png, scale_note + "Each method's own error.", "difference maps in HU")
    rows = []
    for m in methods:
        row = [errors[m]]
        for e in range(len(eps)):
            attacked = _attacked(data, m, e, t)
            ok = attacked is not None and cleans[m] is not None
            row.append(difference_hu(attacked, cleans[m]) if ok else None)
        rows.append(row)
    groups = list(range(len(eps) + 1))
    limits = diverging_limits(rows, groups)
    png = diverging_grid(
        rows,
        [_short(data, m) for m in methods],
        ["clean − ground truth"]
        + [lbl.replace("attacked, ", "attacked − clean, ") for lbl in _eps_labels(data)],
        groups,
        ["clean error, ±{limit} HU"]
        + [f"change at ε = {eps_text(data, e)}, ±{{limit}} HU" for e in eps],
    )
    limit_text = "; ".join(
        [f"clean error ±{limits[0]:g} HU"]
        + [f"ε = {eps_text(data, e)}: ±{limits[k + 1]:g} HU" for k, e in enumerate(eps)]
    )
    caption = (
        scale_note + f"Colour limits: {limit_text}. First column: the method's own error "
        "without attack; other columns: what the worst-case perturbation changed in the image. "
        + attack_caption(data, t)
    )
    marked = (
        f'<figure class="diffmap" data-limits-hu="{",".join(f"{v:g}" for v in limits.values())}">'
    )
    return Markup(figure(png, caption, "difference maps in HU").replace("<figure>", marked, 1))


def _delta_figure(data: RunData, methods: list[str], t: int) -> Markup | None:
    eps = (data.attack or {}).get("eps", [])
    attacked_methods = [m for m in methods if _delta(data, m, 0, t) is not None]
    if not eps or not attacked_methods:
        return None
    rows = [[_delta(data, m, e, t) for e in range(len(eps))] for m in attacked_methods]
    views, det = rows[0][0].shape
    png = diverging_grid(
        rows,
        [_short(data, m) for m in attacked_methods],
        _eps_labels(data),
        [0] * len(eps),
        ["sinogram perturbation δ (line integral of relative attenuation, pixel units)"],
        integer_zoom=True,
    )
    caption = (
        f"The worst-case sinogram perturbation δ added to the measured {views}-view sinogram "
        f"({det} detector pixels), found separately for each method and ε; one colour scale "
        "for all panels. In each panel, views run from 0° (top) to 180° (bottom) and detector "
        "pixels from left to right. "
        f"{attack_caption(data, t)}"
    )
    return figure(png, caption, "sinogram perturbations")


def slice_section(data: RunData, names: Pseudonyms, shown: dict[int, str]) -> Section | None:
    """One subsection per shown test slice."""
    if not shown:
        return None
    methods = _methods(data)
    body: list[Markup] = [
        paragraph(
            "For each slice: every method in three display windows, the difference maps, and "
            "the perturbation of the measured data that caused the change. Look for structures "
            "that appear, disappear or move under attack while the measured data barely change."
        )
    ]
    children = []
    for t, anchor in shown.items():
        gt = data.test_image("x_gt", t)
        if gt is None:
            continue
        meta: dict[str, Any] = data.test_meta(t)
        title = f"Slice {names.slice_label(data.test_label(t))}"
        children.append((anchor, title))
        body.append(Markup('<div class="slice">'))
        body.append(heading(3, title, anchor))
        if meta:
            body.append(
                paragraph(
                    f"Patient {names.patients.get(str(meta.get('patient')), '?')}, "
                    f"pixel {fmt(meta['pixel_mm'], 3)} mm. Ground truth: FBP of "
                    f"{data.metrics.data.gt_views if data.metrics.data else '?'} noise-free views.",
                    "note",
                )
            )
        body.append(_slice_table(data, methods, t))
        body.extend(_window_figures(data, methods, t, gt))
        for extra in (_difference_figure(data, methods, t, gt), _delta_figure(data, methods, t)):
            if extra is not None:
                body.append(extra)
        body.append(Markup("</div>"))
    return Section("slices", "Test slices", Markup("".join(body)), tuple(children))
