"""Stage ``attack``: worst-case sinogram perturbations (Raj eq. 7-8) and Antun's ascent.

For every reconstructor under test and for plain FBP (the classical linear reference),
each chosen test slice (attack.slices of the series in attack.series) is attacked at every
eps of the config with projected gradient ascent through FBP (backward H A), next to
Gaussian noise of the same norm. rho-hat(eps) is the mean over slices of the worst-case
error ||f(y + delta) - x_gt||_2. With simulated noise, each slice is attacked once more at
eps = its own noise norm, the input of the verdict stage.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import DataLoader, TensorDataset
from tqdm.auto import tqdm

from ctrobust.attacks import (
    create_attack_engine,
    gaussian_control,
    image_domain_ascent,
    run_attack_over_loader,
)
from ctrobust.attacks._ball import per_sample, sample_norms
from ctrobust.attacks.certificate import linear_certificate, top_spectrum
from ctrobust.attacks.metrics import rho_hat, slice_quality
from ctrobust.distributed import gather_rows, is_main, shard
from ctrobust.metrics import DATA_RANGE_NOTE
from ctrobust.reconstructors import MethodKind, Reconstructor
from ctrobust.results import (
    AttackResult,
    AttackSettings,
    ImageDomainResult,
    LinearCertificate,
    MethodAttack,
    StartComparison,
    describe,
)
from ctrobust.runfiles import atomic_write_json, save_tensors
from ctrobust.simulation import SimulatedSlices
from ctrobust.verdict import NoiseLevelAttack
from pipelines.builders import (
    attacked_rows,
    configured_pga,
    configured_random_baseline,
    load_simulated,
    measurement_operator,
    reconstructors_under_test,
    seeded_generator,
    slice_labels,
)
from pipelines.runner import RunContext


def centre(ctx: RunContext, part: SimulatedSlices) -> Tensor:
    """The centre of the eps-ball: the noise-free A x0 (Raj eq. 7) or the noisy measured y."""
    return part.y_clean if ctx.cfg.attack.center == "nominal" else part.y


def _pga(
    ctx: RunContext, f: Reconstructor, loader: DataLoader, eps: float, *, jacobian: bool
) -> dict[str, Tensor]:
    """The configured PGA at one eps over the loader: best delta, image, radius, error, steps."""
    pga = configured_pga(ctx.cfg, ctx.device, eps, jacobian=jacobian)
    progress = ctx.show_progress and is_main()
    result = run_attack_over_loader(
        create_attack_engine(f, pga, ctx.device, progress=progress), loader
    )
    return {
        "delta": result.delta,
        "attacked": result.reconstruction,
        "eps_abs": result.eps,
        "error": result.error,
        "iterations": result.iterations,
    }


def _attack_shard(
    ctx: RunContext, f: Reconstructor, y0: Tensor, x_ref: Tensor, eps: float, *, random: bool
) -> dict[str, Tensor]:
    """PGA (and, with ``random``, the random baseline) at one eps around ``y0``, against x_ref.

    With ``attack.start: jacobian`` a network is attacked from both starts; the better one per
    slice is kept and both errors are returned (``cold_error``, ``jacobian_error``).
    """
    cfg = ctx.cfg.attack
    loader = DataLoader(TensorDataset(y0, x_ref), batch_size=cfg.batch_size)
    parts = _pga(ctx, f, loader, eps, jacobian=False)
    if cfg.start == "jacobian" and f.method.kind in (MethodKind.NETWORK, MethodKind.EXTERNAL):
        jac = _pga(ctx, f, loader, eps, jacobian=True)
        wins = jac["error"] > parts["error"]
        merged = {k: torch.where(per_sample(wins, v), jac[k], v) for k, v in parts.items()}
        merged["iterations"] = parts["iterations"] + jac["iterations"]
        parts = {**merged, "cold_error": parts["error"], "jacobian_error": jac["error"]}
    if random:
        baseline = configured_random_baseline(ctx.cfg, ctx.device, eps)
        parts["random_error"] = run_attack_over_loader(
            create_attack_engine(f, baseline, ctx.device, progress=False), loader
        ).mean_error
    return parts


def _attack_at_noise(
    ctx: RunContext, f: Reconstructor, y0: Tensor, x_gt: Tensor, noise: Tensor
) -> dict[str, Tensor]:
    """PGA and the random baseline at eps = each slice's own noise norm (absolute radii).

    Returns per-slice worst-case error, random-noise error and the RMS change of the image
    in HU, f(y0 + delta) - f(y0): what :mod:`ctrobust.verdict` judges.
    """
    size = ctx.cfg.attack.batch_size
    parts: dict[str, list[Tensor]] = {"error": [], "random_error": [], "rms_change_hu": []}
    chunks = range(0, len(y0), size)
    for start in tqdm(
        chunks, desc="attack at noise", disable=not (ctx.show_progress and is_main())
    ):
        y = y0[start : start + size].to(ctx.device)
        x = x_gt[start : start + size].to(ctx.device)
        radius = noise[start : start + size].to(ctx.device)
        # the configured attacks, with this batch's absolute radii in place of attack.eps
        worst = configured_pga(ctx.cfg, ctx.device, 0.0)(f, y, x, eps=radius, relative=False)
        rand = configured_random_baseline(ctx.cfg, ctx.device, 0.0)(
            f, y, x, eps=radius, relative=False
        )
        with torch.no_grad():
            change = worst.reconstruction.detach() - f(y)
        parts["error"].append(worst.error.detach().cpu())
        parts["random_error"].append(rand.mean_error.detach().cpu())
        parts["rms_change_hu"].append(1000.0 * change.flatten(1).pow(2).mean(1).sqrt().cpu())
    return {k: torch.cat(v) for k, v in parts.items()}


def _attack_method(
    ctx: RunContext, f: Reconstructor, test: SimulatedSlices, noise: Tensor
) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """Every eps for one method, test slices sharded over processes; figures and tensors.

    The headline worst case is against the FBP ground truth x_gt (the paper's); a second
    ascent maximises the error against the source image x_true, which a blurred x_gt would
    otherwise hide. ``noise`` is ||y - A x0|| per test slice.
    """
    cfg = ctx.cfg.attack
    rows = shard(range(len(test)))
    if not rows:
        raise ValueError(f"{len(test)} attacked test slices cannot be shared by more processes")
    local = test.subset(rows)
    y0 = centre(ctx, local)
    keys = ("eps_abs_mean", "eps_over_noise", "rho_hat", "rho_hat_random", "rho_hat_source")
    keys += ("psnr", "ssim", "delta_max_per_slice")
    figures: dict[str, Any] = {"eps": list(cfg.eps), **{k: [] for k in keys}}
    per_eps = []
    start = time.perf_counter()
    for eps in cfg.eps:
        parts = _attack_shard(ctx, f, y0, local.x_gt, eps, random=True)
        source = _attack_shard(ctx, f, y0, local.x_true, eps, random=False)
        parts["source_error"] = source["error"]
        per_eps.append({k: gather_rows(v, rows, len(test)) for k, v in parts.items()})
    figures["seconds_per_slice"] = (time.perf_counter() - start) / (len(test) * len(cfg.eps))
    if bool((noise > 0).all()):
        at_noise = _attack_at_noise(ctx, f, y0, local.x_gt, noise[rows])
        gathered = {k: gather_rows(v, rows, len(test)) for k, v in at_noise.items()}
        figures["at_noise"] = NoiseLevelAttack(
            eps_abs=[float(v) for v in noise],
            **{k: [round(float(e), 5) for e in v] for k, v in gathered.items()},
        )
    figures["iterations_per_slice"] = [full["iterations"].tolist() for full in per_eps]
    if "jacobian_error" in per_eps[0]:
        figures["start_comparison"] = _start_comparison(per_eps)
    if cfg.certificate and f.method.kind == MethodKind.FBP:
        figures["certificate"] = _certify(ctx, f, y0, local.x_gt, rows, len(test), per_eps)
    for full in per_eps:
        figures["eps_abs_mean"].append(float(full["eps_abs"].mean()))
        figures["eps_over_noise"].append(
            float((full["eps_abs"] / noise).mean()) if bool((noise > 0).all()) else None
        )
        quality = slice_quality(full["attacked"], test.x_gt)
        figures["rho_hat"].append(rho_hat(full["error"]).value)
        figures["rho_hat_random"].append(rho_hat(full["random_error"]).value)
        figures["rho_hat_source"].append(rho_hat(full["source_error"]).value)
        figures["psnr"].append(float(quality.psnr.mean()))
        figures["ssim"].append(float(quality.ssim.mean()))
        figures["delta_max_per_slice"].append([round(float(e), 5) for e in full["error"]])
    tensors = {
        k: torch.stack([full[k] for full in per_eps]) for k in ("delta", "attacked", "eps_abs")
    }
    return figures, tensors


def _start_comparison(per_eps: list[dict[str, Tensor]]) -> dict[str, Any]:
    """rho-hat from the cold and from the Jacobian start per eps, and slices each won."""
    return StartComparison(
        rho_hat_cold=[rho_hat(full["cold_error"]).value for full in per_eps],
        rho_hat_jacobian=[rho_hat(full["jacobian_error"]).value for full in per_eps],
        jacobian_wins=[
            int((full["jacobian_error"] > full["cold_error"]).sum()) for full in per_eps
        ],
    ).model_dump(mode="json")


def _certify(
    ctx: RunContext,
    f: Reconstructor,
    y0: Tensor,
    x_ref: Tensor,
    rows: list[int],
    n: int,
    per_eps: list[dict[str, Tensor]],
) -> dict[str, Any]:
    """Exact worst case of a linear method against x_ref at every eps, beside its PGA value."""
    cfg = ctx.cfg.attack
    start = time.perf_counter()
    y0, x_ref = y0.to(ctx.device), x_ref.to(ctx.device)
    spectrum = top_spectrum(f, y0[:1], k=cfg.certificate_rank)
    bounds = linear_certificate(f, y0, x_ref, cfg.eps, spectrum, relative=cfg.relative)
    lower = [gather_rows(c.lower.cpu(), rows, n) for c in bounds]
    upper = [gather_rows(c.upper.cpu(), rows, n) for c in bounds]
    ratios = [full["error"] / up for full, up in zip(per_eps, upper, strict=True)]
    return LinearCertificate(
        attained=[float(v.mean()) for v in lower],
        upper=[float(v.mean()) for v in upper],
        pga_over_upper=[
            rho_hat(full["error"]).value / float(up.mean())
            for full, up in zip(per_eps, upper, strict=True)
        ],
        pga_over_upper_min=[float(r.min()) for r in ratios],
        sigma_max=spectrum.sigma_max,
        ritz_pairs=spectrum.theta.shape[0],
        lanczos_residual=spectrum.residual,
        seconds=time.perf_counter() - start,
    ).model_dump(mode="json")


def _image_domain(
    ctx: RunContext, f: Reconstructor, test: SimulatedSlices
) -> tuple[dict[str, Any], dict[str, Tensor]]:
    """Antun's ascent on the first test slice: iterates r1 < r2 < r3 and the Gaussian control."""
    cfg = ctx.cfg.attack.image_domain
    part = test.subset(range(min(cfg.slices, len(test))))
    y, x_gt = centre(ctx, part).to(ctx.device), part.x_gt.to(ctx.device)
    result = image_domain_ascent(
        f,
        f.operator.A,
        y,
        x_gt,
        cfg.lam,
        step=cfg.step,
        n_iter=cfg.n_iter,
        momentum=cfg.momentum,
        levels=cfg.levels,
        generator=seeded_generator(ctx.cfg, ctx.device),
    )
    control = gaussian_control(
        result.perturbations[:, 0],
        f,
        y,
        f.operator.A,
        x_gt,
        adjoint_op=f.operator.A_adjoint,  # Antun Fig. 2: e on the sinogram, v = A^T e
        generator=seeded_generator(ctx.cfg, ctx.device, offset=1),
    )
    x_norm = float(x_gt[0].norm())
    iterates = [
        {
            "iteration": int(result.iterations[0, j]),
            "reached": bool(result.reached[0, j]),
            "r_norm": float(result.norms[0, j]),
            "r_norm_relative": float(result.norms[0, j]) / x_norm,
            "error": float(result.errors[0, j]),
        }
        for j in range(result.norms.shape[1])
    ]
    figures = ImageDomainResult(
        slice=slice_labels(part)[0],
        lam=cfg.lam,
        n_iter=cfg.n_iter,
        levels=list(cfg.levels),
        clean_error=float(result.clean_error[0]),
        iterates=iterates,
        gaussian_control={
            "noise_norm": float(control.noise[0].norm()),
            "error_r1": float(control.error_without[0]),
            "error_r1_plus_noise": float(control.error_with[0]),
            "error_noise_only": float(control.error_noise_only[0]),
        },
    ).model_dump(mode="json")
    tensors = {
        "r": result.perturbations[0].detach().cpu(),
        "recon": result.reconstructions[0].detach().cpu(),
        "x_gt": x_gt[:1].cpu(),
    }
    return figures, tensors


def run(ctx: RunContext, out: Path) -> dict[str, Any]:
    cfg = ctx.cfg.attack
    data, split = load_simulated(ctx)
    rows = attacked_rows(ctx, data, split["test"])
    test = data.subset(rows)
    ctx.log.info(
        "attack: %d slice(s) of %d test series (attack.slices %s)",
        len(test),
        len({str(m["series"]) for m in test.meta}),
        cfg.slices,
    )
    methods = reconstructors_under_test(ctx, measurement_operator(ctx.cfg, ctx.device))
    noise = sample_norms(test.y - test.y_clean)
    models, tensors = {}, {}
    for f in methods:
        models[f.name], tensors[f.name] = _attack_method(ctx, f, test, noise)
        ctx.log.info(
            "attack %s: rho-hat %s",
            f.name,
            ", ".join(f"{v:.3f}" for v in models[f.name]["rho_hat"]),
        )
    image_domain, image_tensors = {}, {}
    if cfg.image_domain.enabled and is_main():
        for f in methods:
            if f.method.kind in (MethodKind.NETWORK, MethodKind.EXTERNAL):
                image_domain[f.name], image_tensors[f.name] = _image_domain(ctx, f, test)
    y0 = "A x0 (noise-free, Raj eq. 7)" if cfg.center == "nominal" else "the measured y"
    relative = f"relative to ||y0||_2 of each slice, y0 = {y0}" if cfg.relative else "absolute"
    measured = bool((noise > 0).all())
    stop = f"at most {cfg.n_iter} iterations" + (
        f", a slice stops when its best error grew by at most {cfg.rel_tol:g} over "
        f"{cfg.patience} steps"
        if cfg.rel_tol is not None
        else ""
    )
    certified = (
        "; for FBP (linear) 'certificate' brackets the exact worst case: 'attained' is reached "
        "by a feasible delta, 'upper' bounds it (trust-region subproblem, docs/attacks.md)"
        if cfg.certificate
        else ""
    )
    metrics = AttackResult(
        note=(
            f"Delta_max = ||f(y0 + delta) - x_gt||_2 over the n x n image in relative "
            f"attenuation, maximised over ||delta||_2 <= eps ({relative}) by projected gradient "
            f"ascent with momentum ({stop}, {cfg.restarts} restarts, {cfg.start} start), next to "
            f"Gaussian noise of the same norm ({cfg.random_draws} draws); x_gt is the "
            f"{ctx.cfg.physics.gt_views}-view FBP; rho_hat_source maximises the error against "
            f"the source image instead; eps_over_noise = eps / ||y - A x0|| (the simulated "
            f"noise), mean over slices; {DATA_RANGE_NOTE} for attacked PSNR/SSIM{certified}"
        ),
        settings=AttackSettings(
            eps=list(cfg.eps),
            relative=cfg.relative,
            center=cfg.center,
            n_iter=cfg.n_iter,
            rel_tol=cfg.rel_tol,
            patience=cfg.patience,
            start=cfg.start,
            step=cfg.step,
            momentum=cfg.momentum,
            restarts=cfg.restarts,
            random_draws=cfg.random_draws,
        ),
        noise_norm_per_slice=[float(v) for v in noise] if measured else None,
        noise_relative_mean=float((noise / sample_norms(test.y_clean)).mean())
        if measured
        else None,
        test_slices=slice_labels(test),
        models={name: MethodAttack(**m) for name, m in models.items()},
        image_domain=image_domain,
    )
    if not is_main():
        return {}
    save_tensors(
        out / "results.pt",
        {
            "slices": slice_labels(test),
            "rows": rows,
            "eps": list(cfg.eps),
            "models": tensors,
            "image_domain": image_tensors,
        },
    )
    atomic_write_json(
        out / "metrics.json",
        {"methods": describe(methods), "attack": metrics.model_dump(mode="json")},
    )
    return {name: [round(v, 3) for v in m["rho_hat"]] for name, m in models.items()}
