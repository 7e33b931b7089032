"""Stage ``instability``: Antun et al.'s tests next to stable classical methods and controls.

On the first test slices: (1) structural details (card symbols, "CAN U SEE IT") inserted
into the image and reconstructed by every method, scored by how much of the detail comes
back; (2) the same slices measured with more and more views, scored against both the
FBP ground truth and the source image; (3) TV and SIRT, their parameters chosen on training
slices against the source image, as the stable references; TV is also attacked with the
attack stage's PGA, the same TV with the same gap stop, differentiated through the
iterations it runs; (4) controls of known (in)stability through the same tests, so the
tests show they can flag. Measurements carry the run's Poisson noise; with and without a
detail the noise realisation is the same, so the score measures the detail and not the noise.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from ctrobust.instability import (
    choose_tv_weight,
    evaluate_detail,
    insert_detail,
    more_views_sweep,
    render_symbols,
    render_text,
)
from ctrobust.instability.controls import (
    BlurredFBPControl,
    CGLSControl,
    HannFBPControl,
    Thresholds,
    amplification,
    verdicts,
)
from ctrobust.instability.detail_score import DetailInsertion
from ctrobust.instability.measurement import NoisyMeasurement
from ctrobust.instability.tv_weight import choose_sirt_iterations, noise_variance
from ctrobust.physics import ParallelBeam2D, default_n_det
from ctrobust.physics.backend_choice import fastest_exact_backend
from ctrobust.physics.matrix_cache import matrix_cache_dir
from ctrobust.physics.sparse_projector import release_matrices
from ctrobust.reconstructors import FBP, SIRT, TV, Reconstructor
from ctrobust.results import (
    ControlFigures,
    ControlsResult,
    DetailsResult,
    InstabilityResult,
    MoreViewsResult,
    SIRTChoice,
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

TRAINING_SLICES_FOR_PARAMETERS = 4
SYMBOL_GLYPHS = {
    "spades": "\u2660",
    "hearts": "\u2665",
    "diamonds": "\u2666",
    "clubs": "\u2663",
}
VIEW_RULE = (
    "the same weight at every view count: each detector bin of each view gets i0 photons, so "
    "the noise variance of one sinogram entry does not depend on the view count, nor does the "
    "MAP weight lam = sigma^2 beta"
)
PATIENT_RULE = (
    "; per slice, lam = beta * sigma^2 with sigma^2 the slice's mean per-entry noise variance "
    "(delta method on its measured sinogram): the candidates are beta"
)


def _noise_scale(ctx: RunContext, part: SimulatedSlices) -> torch.Tensor | None:
    """Each slice's mean per-entry noise variance, or None without the noise model."""
    phys = ctx.cfg.physics
    if not phys.i0:
        return None
    return noise_variance(part.y.to(ctx.device), part.pixel_mm, phys.i0, phys.mu_water_per_mm)


def _detail_masks(ctx: RunContext, pixel: float) -> dict[str, torch.Tensor]:
    cfg, n = ctx.cfg.instability.details, ctx.cfg.data.n
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
    return masks


def _details(
    ctx: RunContext,
    reconstructors: dict[str, Reconstructor],
    op: ParallelBeam2D,
    test: SimulatedSlices,
    measure: NoisyMeasurement,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every symbol and the text, inserted into the test slices and reconstructed in one batch
    with the slices themselves (all details at once: one operator pass per iteration, and each
    slice without a detail once); scores per method."""
    cfg = ctx.cfg.instability.details
    x = test.x_true.to(ctx.device)
    masks = _detail_masks(ctx, float(test.pixel_mm[0]))
    inserted = [insert_detail(x, mask, cfg.contrast_hu, position="auto") for mask in masks.values()]
    stacked = DetailInsertion(
        x=torch.cat([i.x for i in inserted]),
        detail=torch.cat([i.detail for i in inserted]),
        boxes=[box for i in inserted for box in i.boxes],
    )
    results = evaluate_detail(reconstructors, op, x, stacked, measure=measure)
    b = x.shape[0]
    methods = {
        name: {
            "score": [float(s.mean()) for s in r.score.split(b)],
            "psnr_box": [float(s.mean()) for s in r.box_psnr.split(b)],
        }
        for name, r in results.items()
    }
    images = {
        "names": list(masks),
        "x": torch.cat([i.x[:1].cpu() for i in inserted]),
        "detail": torch.cat([i.detail[:1].cpu() for i in inserted]),
        "recons": {m: r.rec_with[::b].cpu() for m, r in results.items()},
    }
    figures = DetailsResult(
        names=list(masks),
        size_mm=cfg.size_mm,
        contrast_hu=cfg.contrast_hu,
        note="score = <f(A(x+d)) - f(Ax), d> / ||d||^2 (1 = fully recovered, 0 = erased), "
        "mean over the slices; psnr_box = PSNR inside the detail's box against x + d",
        methods=methods,
    ).model_dump(mode="json")
    return figures, images


def _center(ctx: RunContext, part: SimulatedSlices) -> tuple[torch.Tensor, str]:
    """The attack stage's ball centre: the noise-free A x0 or the measured y."""
    if ctx.cfg.attack.center == "nominal":
        return part.y_clean.to(ctx.device), "A x0 (noise-free, Raj eq. 7)"
    return part.y.to(ctx.device), "the measured y"


def _attack_tv(ctx: RunContext, tv: TV, test: SimulatedSlices) -> dict[str, Any]:
    """rho-hat of the reported TV: every eps in one batch, the attack stage's PGA settings."""
    cfg, attack = ctx.cfg.instability, ctx.cfg.attack
    rows = range(min(cfg.tv_attack_slices, len(test)))
    test = test.subset(rows)
    # the same TV restricted to the attacked slices' own weights (one per slice)
    tv = TV(tv.operator, tv.lam[list(rows)], n_iter=tv.n_iter, tol=tv.tol, x_max=tv.x_max)
    y, center = _center(ctx, test)
    budgets = cfg.tv_attack_eps or attack.eps
    k = len(budgets)
    eps = torch.tensor(budgets, dtype=y.dtype, device=ctx.device).repeat_interleave(len(test))
    n_iter = cfg.tv_attack_iter or attack.n_iter
    pga = configured_pga(ctx.cfg, ctx.device, 0.0)
    y_k, x_k = y.repeat(k, 1, 1, 1), test.x_gt.to(ctx.device).repeat(k, 1, 1, 1)
    iterations: list[torch.Tensor] = []  # TV's iterations per sample, one row per call

    def recorded_tv(sinograms: torch.Tensor) -> torch.Tensor:
        x, info = tv.reconstruct(sinograms)
        iterations.append(info.sample_iterations)
        return x

    result = pga.func(recorded_tv, y_k, x_k, **{**pga.keywords, "eps": eps, "n_iter": n_iter})
    # the record of the call that gave each reported point (no third TV run to count them)
    at_best = torch.stack(iterations).gather(0, result.best_evaluation[None])[0]
    rho = [float(v.mean()) for v in result.error.split(len(test))]
    return TVAttack(
        eps=list(budgets),
        rho_hat=rho,
        slices=len(test),
        pga_iterations=n_iter,
        tv_iterations=[int(v) for v in at_best],
        center=center,
        note="the reported TV (same weight, gap stop and iteration cap), differentiated "
        "exactly through the primal-dual iterations it runs (the stopping index is fixed by "
        "the forward run), attacked with the attack stage's PGA on the first test slices",
    ).model_dump(mode="json")


def _amplifications(
    ctx: RunContext, methods: dict[str, Reconstructor], test: SimulatedSlices
) -> tuple[float, dict[str, float]]:
    """Worst-case relative amplification (controls.amplification) at the smallest eps."""
    cfg = ctx.cfg.instability.controls
    y, _ = _center(ctx, test.subset([0]))
    # the smallest positive budget: eps = 0 (a clean reference point in some configs) moves nothing
    eps = min((e for e in ctx.cfg.attack.eps if e > 0), default=0.0)
    pga = configured_pga(ctx.cfg, ctx.device, eps)
    attack = lambda f, yy, target, eps: pga.func(  # noqa: E731
        f, yy, target, **{**pga.keywords, "eps": eps, "n_iter": cfg.pga_iter}
    )
    kappa = {name: float(amplification(f, y, eps, attack).mean()) for name, f in methods.items()}
    return eps, kappa


def _controls(
    ctx: RunContext,
    op: ParallelBeam2D,
    methods: dict[str, Reconstructor],
    controls: dict[str, tuple[str, dict[str, bool]]],
    details: dict[str, Any],
    sweep: dict[str, Any],
    test: SimulatedSlices,
) -> dict[str, Any]:
    """Antun's three tests on the networks and the controls, with each test's verdict."""
    cfg = ctx.cfg.instability.controls
    fbp = FBP(op)
    tested = {n: f for n, f in methods.items() if f.differentiable and n != "tv"}
    eps, kappa = _amplifications(ctx, {fbp.name: fbp, **tested}, test)
    figures = {
        name: {
            "amplification": kappa.get(name),
            "score_min": min(details["methods"][name]["score"]),
            # against the source image: against the blurred FBP ground truth a method that
            # gets closer to the truth with more views would seem to get worse
            "drop_db": sweep["methods"][name]["extra"]["max_psnr_drop_db"]
            if name in sweep["methods"]
            else None,
        }
        for name in methods
    }
    limits = Thresholds(cfg.amplification_factor, cfg.score_min, cfg.drop_max_db)
    flags = verdicts(figures, kappa[fbp.name], limits)
    return ControlsResult(
        eps=eps,
        fbp_amplification=kappa[fbp.name],
        thresholds={
            "amplification_max": cfg.amplification_factor * kappa[fbp.name],
            "score_min": cfg.score_min,
            "drop_max_db": cfg.drop_max_db,
        },
        methods={
            name: ControlFigures(
                label=methods[name].label,
                role=controls.get(name, ("under test", {}))[0],
                expected=controls.get(name, ("", {}))[1],
                flagged=flags[name],
                **figures[name],
            )
            for name in methods
        },
        available={
            "tiny_perturbation": "positive: CGLS past semi-convergence; negative: Hann FBP",
            "structural_change": "positive: blurred FBP; negative: Hann FBP",
            "more_samples": "negative: Hann FBP; no positive control (a method known to get "
            "worse with more views would have to be trained, which the demo does not do)",
        },
        note=f"amplification = (||f(y+e) - f(y)|| / ||f(y)||) / (||e|| / ||y||) at the worst "
        f"e found by {cfg.pga_iter} PGA iterations, ||e|| <= {eps:g} ||y||, on the first test "
        f"slice; flagged above {cfg.amplification_factor:g} x ram-lak FBP's "
        f"{kappa[fbp.name]:.3g}. Structural change flagged when the lowest detail recovery "
        f"score is below {cfg.score_min:g}; more samples when PSNR against the source image "
        f"drops by more than {cfg.drop_max_db:g} dB as views are added. TV is attacked "
        "separately (tv_attack).",
    ).model_dump(mode="json")


def _sweep_operator(ctx: RunContext, views: int) -> ParallelBeam2D:
    """The operator at one view count of the sweep, on the fastest exact backend that fits
    memory: TV, SIRT and CGLS apply A and A^T hundreds of times, and the batched matrix is
    several times faster than ASTRA's projector wherever it fits."""
    n, n_det = ctx.cfg.data.n, ctx.cfg.physics.n_det or default_n_det(ctx.cfg.data.n)
    release_matrices()  # the previous view count's matrix must not count against this one
    backend = fastest_exact_backend(n, views, n_det, ctx.device, cache_dir=matrix_cache_dir())
    ctx.log.info("instability: %d views on the %s backend", views, backend)
    return measurement_operator(ctx.cfg, ctx.device, views=views, backend=backend)


def _more_views(ctx, reconstructors, test, measure, op, fixed) -> tuple[dict, MoreViewsResult]:
    operators: dict[int, str] = {}

    def operator(views: int) -> ParallelBeam2D:
        built = _sweep_operator(ctx, views)
        operators[views] = built.backend
        return built

    sweep = more_views_sweep(
        {name: f for name, f in reconstructors.items() if name not in fixed},
        test.x_true.to(ctx.device),
        views=ctx.cfg.instability.views,
        reference=test.x_gt.to(ctx.device),
        operator_factory=operator,
        measure=measure,
        extra_reference=test.x_true.to(ctx.device),
    )
    result = MoreViewsResult(
        views=sweep["views"],
        note=f"sinograms simulated from the same slices at each view count with the run's noise "
        f"model; scored against the {ctx.cfg.physics.gt_views}-view FBP (psnr) and against the "
        f"source image (psnr_source); {sweep['data_range']}; operator backend per view count "
        f"(the same ASTRA projector either way): "
        + ", ".join(f"{v} {b}" for v, b in sorted(operators.items()))
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
                "psnr_source": m["extra"]["psnr_mean"],
                "ssim_source": m["extra"]["ssim_mean"],
                "max_psnr_drop_db_source": m["extra"]["max_psnr_drop_db"],
            }
            for name, m in sweep["methods"].items()
        },
    )
    return sweep, result


def run(ctx: RunContext, out: Path) -> dict[str, Any]:
    cfg = ctx.cfg.instability
    data, split = load_simulated(ctx)
    test = data.subset(split["test"][: cfg.max_slices])
    train = data.subset(split["train"][:TRAINING_SLICES_FOR_PARAMETERS])
    op = measurement_operator(ctx.cfg, ctx.device)
    attack_tv = cfg.attack_tv and ctx.cfg.attack.enabled
    steps = ["weights", "details", "more views"] + ["controls"] * cfg.controls.enabled
    steps += ["TV attack"] * attack_tv
    seconds: dict[str, float] = {}
    bar = tqdm(total=len(steps), desc="instability", disable=not ctx.show_progress, leave=False)

    def step(name: str, start: float) -> None:
        seconds[name] = time.perf_counter() - start
        ctx.log.info("instability: %s done in %.1f s", name, seconds[name])
        bar.update(1)

    t0 = time.perf_counter()
    y_train, x_src = train.y.to(ctx.device), train.x_true.to(ctx.device)
    ctx.log.info(
        "instability: weight search on %d training slices against the source image", len(train)
    )
    scale_train, scale_test = _noise_scale(ctx, train), _noise_scale(ctx, test)
    lam, table = choose_tv_weight(
        op, y_train, x_src, cfg.tv_weights, cfg.tv_iter, cfg.tv_tol, scale=scale_train
    )
    sirt_iter, sirt_curve = choose_sirt_iterations(op, y_train, x_src, cfg.sirt_iter_max)
    at_edge = lam in (min(cfg.tv_weights), max(cfg.tv_weights))
    if at_edge:
        ctx.log.warning(
            "TV weight %g is at an end of instability.tv_weights %s: the best weight may lie "
            "outside the grid, so TV may be a weaker reference than it can be; widen the grid",
            lam,
            sorted(cfg.tv_weights),
        )
    if sirt_iter == cfg.sirt_iter_max:
        ctx.log.warning(
            "SIRT still improves after instability.sirt_iter_max = %d iterations: its "
            "semi-convergence point lies beyond the search, so SIRT runs %d iterations",
            sirt_iter,
            sirt_iter,
        )
    ctx.log.info(
        "instability: TV weight %g%s, SIRT %d iterations",
        lam,
        "" if scale_test is None else " per unit noise variance",
        sirt_iter,
    )
    step("weights", t0)

    tv_lam = lam if scale_test is None else lam * scale_test
    tv = TV(op, tv_lam, n_iter=cfg.tv_iter, tol=cfg.tv_tol)
    methods = reconstructors_under_test(ctx, op)
    methods[1:1] = [tv, SIRT(op, n_iter=sirt_iter, tol=0.0)]
    roles: dict[str, tuple[str, dict[str, bool]]] = {}
    if cfg.controls.enabled:
        blur_px = cfg.controls.blur_mm / float(test.pixel_mm[0])
        stable = {"tiny_perturbation": False, "structural_change": False, "more_samples": False}
        controls = [
            (CGLSControl(op, n_iter=cfg.controls.cgls_iter), {"tiny_perturbation": True}),
            (BlurredFBPControl(op, sigma_px=blur_px), {"structural_change": True}),
            (HannFBPControl(op), stable),
        ]
        methods += [f for f, _ in controls]
        roles = {
            f.name: ("positive control" if any(e.values()) else "negative control", e)
            for f, e in controls
        }
    reconstructors = {f.name: f for f in methods}
    measure = NoisyMeasurement(
        test.x_true.to(ctx.device),
        test.pixel_mm,
        ctx.cfg.physics.i0,
        ctx.cfg.physics.mu_water_per_mm,
        ctx.cfg.seed,
    )
    fixed = [f.name for f in methods if f.fixed_geometry]  # e.g. a sinogram-input model
    t0 = time.perf_counter()
    n_details = len(cfg.details.symbols) + bool(cfg.details.text)
    ctx.log.info("instability: %d details x %d methods", n_details, len(methods))
    with torch.no_grad():
        details, detail_images = _details(ctx, reconstructors, op, test, measure)
    step("details", t0)
    t0 = time.perf_counter()
    ctx.log.info("instability: more views %s", sorted(cfg.views))
    with torch.no_grad():
        sweep, more_views = _more_views(ctx, reconstructors, test, measure, op, fixed)
    release_matrices()  # the sweep's matrices (7.6 GB at 512 x 1000 views) go now
    step("more views", t0)
    controls_result = None
    if cfg.controls.enabled:
        t0 = time.perf_counter()
        ctx.log.info("instability: controls (amplification, details, more views)")
        controls_result = _controls(ctx, op, reconstructors, roles, details, sweep, test)
        step("controls", t0)
    tv_attack = None
    if attack_tv:
        t0 = time.perf_counter()
        budgets = cfg.tv_attack_eps or ctx.cfg.attack.eps
        ctx.log.info("instability: TV attack, %d eps in one batch", len(budgets))
        tv_attack = _attack_tv(ctx, tv, test)
        step("TV attack", t0)
    bar.close()
    metrics = InstabilityResult(
        slices=len(test),
        tv=TVChoice(
            lam=lam,
            candidates=table,
            chosen_on=f"train ({len(train)} slices), against the source image",
            at_edge_of_grid=at_edge,
            stopping=f"relative primal-dual gap (P - D) / P < {cfg.tv_tol:g}, at most "
            f"{cfg.tv_iter} iterations, box 0 <= x <= {tv.x_max:g}",
            view_rule=VIEW_RULE + ("" if scale_test is None else PATIENT_RULE),
            test_weights=tv.lam.tolist(),
        ),
        sirt=SIRTChoice(
            iterations=sirt_iter,
            psnr_by_iteration=sirt_curve,
            chosen_on=f"train ({len(train)} slices), against the source image",
        ),
        details=details,
        more_views=more_views,
        tv_attack=tv_attack,
        controls=controls_result,
        seconds=seconds,
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
