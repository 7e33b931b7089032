"""What the stages build from a config, in one place: operators, networks, attacks, generators,
and the outputs of earlier stages. Stages import this module; it never imports a stage."""

from __future__ import annotations

from functools import partial
from pathlib import Path

import torch

from ctrobust.attacks import measurement_pga, random_perturbation_baseline
from ctrobust.attacks.jacobian_start import pga_from_jacobian
from ctrobust.config import RunConfig
from ctrobust.models import ResidualUNet, build_residual_unet
from ctrobust.physics import ParallelBeam2D
from ctrobust.physics.matrix_cache import matrix_cache_dir
from ctrobust.reconstructors import FBP, Reconstructor, trained_network
from ctrobust.reconstructors.external import ExternalReconstructor, load_external
from ctrobust.runfiles import load_tensors
from ctrobust.selection import select_rows, slice_label
from ctrobust.simulation import SimulatedSlices
from dicom_io import DeidConfig, Deidentifier
from pipelines.deid_salt import resolve_salt
from pipelines.runner import RunContext


def measurement_operator(
    cfg: RunConfig, device: torch.device, views: int | None = None, backend: str = "auto"
) -> ParallelBeam2D:
    """The configured parallel-beam operator at ``views`` views (the measured views by default).

    ``backend="matrix"`` forces the batched sparse matrix (iterative methods apply A and A^T
    hundreds of times); ``"astra"`` runs ASTRA slice by slice (a single pass at many views,
    where building the matrix costs more than it saves); :mod:`ctrobust.physics.backend_choice`
    says which. Built matrices are kept in the user's matrix cache (:mod:`ctrobust.physics.
    matrix_cache`), so later runs load them instead of building them again.
    """
    return ParallelBeam2D(
        cfg.data.n,
        views or cfg.physics.views,
        n_det=cfg.physics.n_det,
        device=device,
        window=cfg.physics.filter,
        backend=backend,
        cache_dir=matrix_cache_dir(),
    )


def image_network(cfg: RunConfig) -> ResidualUNet:
    """FBPConvNet's image network N as ``cfg.model`` describes it (untrained)."""
    return build_residual_unet(
        cfg.model.channels, num_res_units=cfg.model.num_res_units, dropout=cfg.model.dropout
    )


def seeded_generator(cfg: RunConfig, device: torch.device, offset: int = 0) -> torch.Generator:
    """A generator on ``device`` seeded with the run's seed plus ``offset``."""
    return torch.Generator(device=device).manual_seed(cfg.seed + offset)


def configured_pga(
    cfg: RunConfig, device: torch.device, eps: float, *, jacobian: bool = False
) -> partial:
    """``measurement_pga`` with the config's attack settings bound: call it with (f, y, x).

    ``jacobian`` starts the first run at the Jacobian's top singular vector instead of 0.
    """
    attack = cfg.attack
    options = {
        "eps": eps,
        "relative": attack.relative,
        "n_iter": attack.n_iter,
        "tol": attack.rel_tol,
        "patience": attack.patience,
        "step": attack.step,
        "momentum": attack.momentum,
        "restarts": attack.restarts,
        "generator": seeded_generator(cfg, device),
    }
    if jacobian:
        return partial(pga_from_jacobian, steps=attack.jacobian_steps, **options)
    return partial(measurement_pga, random_start=attack.random_start, **options)


def configured_random_baseline(cfg: RunConfig, device: torch.device, eps: float) -> partial:
    """Gaussian perturbations of the attack's norm, with the config's draws bound."""
    return partial(
        random_perturbation_baseline,
        eps=eps,
        relative=cfg.attack.relative,
        n_draws=cfg.attack.random_draws,
        generator=seeded_generator(cfg, device),
    )


def load_simulated(ctx: RunContext) -> tuple[SimulatedSlices, dict[str, list[int]]]:
    """The simulated slices and the train/val/test split of a finished ``simulate`` stage."""
    state = load_tensors(ctx.stage_dir("simulate") / "data.pt")
    return SimulatedSlices.from_dict(state["slices"]), state["split"]


def network_weights(ctx: RunContext, scheme: str) -> Path:
    """Where the train stage keeps the trained image network of ``scheme``."""
    return ctx.stage_dir("train") / f"{scheme}.pt"


def load_networks(ctx: RunContext) -> dict[str, ResidualUNet]:
    """The trained image networks of every scheme, in eval mode on the run's device."""
    nets = {}
    for scheme in ctx.cfg.train.schemes:
        net = image_network(ctx.cfg)
        net.load_state_dict(load_tensors(network_weights(ctx, scheme.name)))
        nets[scheme.name] = net.to(ctx.device).eval()
    return nets


def trained_reconstructors(ctx: RunContext, op: ParallelBeam2D) -> list[Reconstructor]:
    """Every trained FBPConvNet of the run, at the geometry of ``op``."""
    nets = load_networks(ctx)
    return [
        trained_network(op, nets[s.name], s.name, s.scheme, network_weights(ctx, s.name)).eval()
        for s in ctx.cfg.train.schemes
    ]


def external_reconstructors(
    cfg: RunConfig, op: ParallelBeam2D, device: torch.device
) -> list[ExternalReconstructor]:
    """The config's ``reconstructors``, loaded at the geometry of ``op`` and checked there."""
    return [
        load_external(spec, op, device, cfg.physics.mu_water_per_mm) for spec in cfg.reconstructors
    ]


def check_external_reconstructors(cfg: RunConfig, device: torch.device) -> None:
    """Load and check every declared reconstructor once, before any stage runs."""
    if cfg.reconstructors and cfg.linear_theory is None and cfg.cs_conditioning is None:
        external_reconstructors(cfg, measurement_operator(cfg, device), device)


def reconstructors_under_test(ctx: RunContext, op: ParallelBeam2D) -> list[Reconstructor]:
    """The methods every stage evaluates: FBP of the measured views, the trained networks,
    then the external reconstructors of the config."""
    return [
        FBP(op),
        *trained_reconstructors(ctx, op),
        *external_reconstructors(ctx.cfg, op, ctx.device),
    ]


def slice_labels(part: SimulatedSlices) -> list[str]:
    """Human-readable names of slices: ``patient:series-suffix:IN<InstanceNumber> z=<z>mm``."""
    return [slice_label(m) for m in part.meta]


def attacked_rows(ctx: RunContext, data: SimulatedSlices, test_rows: list[int]) -> list[int]:
    """The test rows the attack stage attacks: ``attack.series`` and ``attack.slices``, capped
    by ``attack.max_slices``. Series named by source UID or patient also match their
    pseudonyms in a de-identified run."""
    cfg = ctx.cfg.attack
    deid = deidentifier(ctx)[0] if cfg.series is not None else None

    def names_of(name: str) -> set[str]:
        return {name} if deid is None else {name, deid.uid(name), deid.pseudonym(name)}

    rows = select_rows(data.meta, test_rows, cfg.slices, cfg.series, names_of)
    return rows[: cfg.max_slices] if cfg.max_slices else rows


def deidentifier(ctx: RunContext) -> tuple[Deidentifier | None, str]:
    """The run's de-identification (None when off) and a sentence saying what it does.

    The sentence names the salt only by its fingerprint and source, never its value.
    """
    cfg = ctx.cfg.export.deidentify
    if not cfg.enabled:
        return None, "none: patient and study identifiers are kept as in the source"
    salt = resolve_salt(cfg, ctx.run_dir, ctx.log)
    dates = (
        "dates and times removed"
        if cfg.date_shift_days is None
        else f"dates shifted by {cfg.date_shift_days} days"
    )
    note = (
        f"patient identifiers replaced, {dates}, UIDs remapped (salted hash; salt from "
        f"{salt.source}, fingerprint {salt.fingerprint})"
    )
    return Deidentifier(DeidConfig(salt=salt.value, date_shift_days=cfg.date_shift_days)), note
