"""Stage ``instability``: Antun et al.'s test next to a stable classical method.

On the first test slices: (1) structural details (card symbols, "CAN U SEE IT")
inserted into the image and reconstructed by every method, scored by how much of
the detail comes back; (2) the same slices measured with more and more views;
(3) TV (weight chosen on training slices) as the stable reference, also attacked
through its unrolled iterations with the attack stage's PGA so that worst-case
figures compare like with like. Measurements carry the run's Poisson noise; with
and without a detail the noise realisation is the same, so the score measures the
detail and not the noise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from ctrobust.instability import (
    choose_tv_weight,
    evaluate_detail,
    insert_detail,
    more_views_sweep,
    render_symbols,
    render_text,
)
from ctrobust.instability.measurement import NoisyMeasurement
from ctrobust.physics import ParallelBeam2D
from ctrobust.reconstructors import TV, Reconstructor, UnrolledTV
from ctrobust.results import (
    DetailsResult,
    InstabilityResult,
    MoreViewsResult,
    TVAttack,
    TVChoice,
    describe,
)
from ctrobust.runfiles import atomic_write_json, save_tensors
from ctrobust.simulation import SimulatedSlices
from pipelines.builders import (
    configured_pga,
    load_simulated,
    measurement_operator,
    reconstructors_under_test,
)
from pipelines.runner import RunContext

TRAINING_SLICES_FOR_TV_WEIGHT = 4
SYMBOL_GLYPHS = {
    "spades": "\u2660",
    "hearts": "\u2665",
    "diamonds": "\u2666",
    "clubs": "\u2663",
}


def _details(
    ctx: RunContext,
    reconstructors: dict[str, Reconstructor],
    op: ParallelBeam2D,
    test: SimulatedSlices,
    measure: NoisyMeasurement,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every symbol and the text, inserted into the test slices; scores per method."""
    cfg = ctx.cfg.instability.details
    n, pixel = ctx.cfg.data.n, float(test.pixel_mm[0])
    x = test.x_true.to(ctx.device)
    masks = {
        name: render_symbols(
            n, SYMBOL_GLYPHS[name], height=cfg.size_mm, unit="mm", pixel_size_mm=pixel
        )
        for name in cfg.symbols
    }
    if cfg.text:
        masks[cfg.text] = render_text(
            cfg.text, n, height=cfg.size_mm / 2, unit="mm", pixel_size_mm=pixel
        )
    methods: dict[str, dict[str, list[float]]] = {
        name: {"score": [], "psnr_box": []} for name in reconstructors
    }
    images: dict[str, Any] = {
        "names": list(masks),
        "x": [],
        "detail": [],
        "recons": {m: [] for m in reconstructors},
    }
    for mask in masks.values():
        insertion = insert_detail(x, mask, cfg.contrast_hu, position="auto")
        results = evaluate_detail(reconstructors, op, x, insertion, measure=measure)
        for name, result in results.items():
            methods[name]["score"].append(float(result.score.mean()))
            methods[name]["psnr_box"].append(float(result.box_psnr.mean()))
            images["recons"][name].append(result.rec_with[:1].cpu())
        images["x"].append(insertion.x[:1].cpu())
        images["detail"].append(insertion.detail[:1].cpu())
    images["x"], images["detail"] = torch.cat(images["x"]), torch.cat(images["detail"])
    images["recons"] = {m: torch.cat(v) for m, v in images["recons"].items()}
    figures = DetailsResult(
        names=list(masks),
        size_mm=cfg.size_mm,
        contrast_hu=cfg.contrast_hu,
        note="score = <f(A(x+d)) - f(Ax), d> / ||d||^2 (1 = fully recovered, 0 = erased), "
        "mean over the slices; psnr_box = PSNR inside the detail's box against x + d",
        methods=methods,
    ).model_dump(mode="json")
    return figures, images


def _attack_tv(
    ctx: RunContext, lam: float, op: ParallelBeam2D, test: SimulatedSlices
) -> dict[str, Any]:
    """rho-hat of the unrolled TV reconstructor with the attack stage's PGA settings."""
    cfg, attack = ctx.cfg.instability, ctx.cfg.attack
    f = UnrolledTV(op, lam, n_iter=cfg.tv_unrolled_iter)
    test = test.subset(range(min(cfg.tv_attack_slices, len(test))))
    y, x_gt = test.y.to(ctx.device), test.x_gt.to(ctx.device)
    rho = []
    for eps in attack.eps:
        result = configured_pga(ctx.cfg, ctx.device, eps)(f, y, x_gt)
        rho.append(float(result.error.mean()))
    return TVAttack(
        eps=list(attack.eps),
        rho_hat=rho,
        slices=len(test),
        unrolled_iterations=cfg.tv_unrolled_iter,
        note="unrolled TV (a fixed number of primal-dual iterations) attacked with the attack "
        "stage's PGA settings, on the first test slices",
    ).model_dump(mode="json")


def _sweep_operator(ctx: RunContext, views: int) -> ParallelBeam2D:
    """The operator at one view count of the sweep: the batched matrix, since TV applies A
    and A^T hundreds of times (built in about 1 s per 40 views at 128 x 128)."""
    return measurement_operator(ctx.cfg, ctx.device, views=views, backend="matrix")


def run(ctx: RunContext, out: Path) -> dict[str, Any]:
    cfg = ctx.cfg.instability
    data, split = load_simulated(ctx)
    test = data.subset(split["test"][: cfg.max_slices])
    train = data.subset(split["train"][:TRAINING_SLICES_FOR_TV_WEIGHT])
    op = measurement_operator(ctx.cfg, ctx.device)

    lam, table = choose_tv_weight(
        op,
        train.y.to(ctx.device),
        train.x_gt.to(ctx.device),
        cfg.tv_weights,
        n_iter_max=cfg.tv_iter,
        tol=cfg.tv_tol,
    )
    at_edge = lam in (min(cfg.tv_weights), max(cfg.tv_weights))
    if at_edge:
        ctx.log.warning(
            "TV weight %g is at an end of instability.tv_weights %s: the best weight may lie "
            "outside the grid, so TV may be a weaker reference than it can be; widen the grid",
            lam,
            sorted(cfg.tv_weights),
        )
    methods = reconstructors_under_test(ctx, op)
    methods.insert(1, TV(op, lam, n_iter=cfg.tv_iter, tol=cfg.tv_tol))
    reconstructors = {f.name: f for f in methods}
    measure = NoisyMeasurement(
        test.x_true.to(ctx.device),
        test.pixel_mm,
        ctx.cfg.physics.i0,
        ctx.cfg.physics.mu_water_per_mm,
        ctx.cfg.seed,
    )
    fixed = [f.name for f in methods if f.fixed_geometry]  # e.g. a sinogram-input model
    with torch.no_grad():
        details, detail_images = _details(ctx, reconstructors, op, test, measure)
        sweep = more_views_sweep(
            {name: f for name, f in reconstructors.items() if name not in fixed},
            test.x_true.to(ctx.device),
            views=cfg.views,
            reference=test.x_gt.to(ctx.device),
            operator_factory=lambda views: _sweep_operator(ctx, views),
            measure=measure,
        )
    more_views = MoreViewsResult(
        views=sweep["views"],
        note=f"sinograms simulated from the same slices at each view count with the run's noise "
        f"model; scored against the {ctx.cfg.physics.gt_views}-view FBP; {sweep['data_range']}"
        + (
            f"; not swept (they run at {op.n_views} views only): {', '.join(fixed)}"
            if fixed
            else ""
        ),
        methods={
            name: {
                "psnr": m["psnr_mean"],
                "ssim": m["ssim_mean"],
                "max_psnr_drop_db": m["max_psnr_drop_db"],
            }
            for name, m in sweep["methods"].items()
        },
    )
    attack_tv = cfg.attack_tv and ctx.cfg.attack.enabled
    metrics = InstabilityResult(
        slices=len(test),
        tv=TVChoice(
            lam=lam,
            candidates=table,
            chosen_on=f"train ({len(train)} slices)",
            at_edge_of_grid=at_edge,
        ),
        details=details,
        more_views=more_views,
        tv_attack=_attack_tv(ctx, lam, op, test) if attack_tv else None,
    )
    save_tensors(out / "results.pt", {"details": detail_images})
    atomic_write_json(
        out / "metrics.json",
        {
            "methods": describe(methods),
            "instability": metrics.model_dump(mode="json", exclude_none=True),
        },
    )
    return {"tv_lam": lam, "detail_scores": {m: v["score"] for m, v in details["methods"].items()}}
