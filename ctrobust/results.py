"""Typed sections of ``metrics.json``: written by the stages, read by the report and the summary.

Each stage builds one of these models and writes ``model_dump(mode="json")``; everything that
reads ``metrics.json`` validates it with :class:`Metrics` first, so a missing or renamed key is
a validation error naming the key, not a silent gap in a report. Figures that are undefined
(an image-domain level that was never reached, for example) are ``null``, never NaN: all JSON
ctrobust writes is strict. ``docs/run_folder.md`` is checked against these models by a test.
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from ctrobust.reconstructors.base import MethodKind, Reconstructor
from ctrobust.verdict import NoiseLevelAttack, VerdictResult


def _finite_or_none(value: Any) -> Any:
    """NaN and infinities become None: they have no JSON spelling."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


MaybeFloat = Annotated[float | None, BeforeValidator(_finite_or_none)]
"""A figure that may be undefined (then null, with the reason in the section's note)."""


class Result(BaseModel):
    """Base of every section: unknown keys are refused, so writer and reader cannot drift."""

    model_config = ConfigDict(extra="forbid")


# --- methods under test ---------------------------------------------------------------------


class MethodInfo(Result):
    """One reconstructor under test, as the report names it (written by the stages)."""

    kind: MethodKind
    label: str = Field(description="human name, e.g. 'FBP, 143 views' or 'plain (network)'")
    n: int
    views: int
    n_det: int
    differentiable: bool
    what: str = Field(description="what the method is, in one phrase")
    weights: str | None = Field(None, description="where its weights came from")
    sha256: str | None = Field(None, description="checksum of the weights file")

    @classmethod
    def of(cls, method: Reconstructor) -> MethodInfo:
        """The description of a reconstructor, as metrics.json keeps it."""
        g = method.geometry
        return cls(
            kind=method.method.kind,
            label=method.label,
            n=g.n,
            views=g.views,
            n_det=g.n_det,
            differentiable=method.differentiable,
            what=method.provenance.what,
            weights=method.provenance.weights,
            sha256=method.provenance.sha256,
        )


def describe(methods: list[Reconstructor]) -> dict[str, Any]:
    """The ``methods`` section for a list of reconstructors, JSON-ready."""
    return {m.name: MethodInfo.of(m).model_dump(mode="json") for m in methods}


# --- data and training ----------------------------------------------------------------------


class DataResult(Result):
    """The simulated slices and the split (stage simulate)."""

    n: int
    views: int
    gt_views: int
    n_det: int
    i0: float | None
    pixel_mm: list[float]
    slices: dict[str, int]
    patients: dict[str, list[str]]
    split_by: str


class SchemeTraining(Result):
    """One trained scheme (stage train): epochs run and the last epoch's figures."""

    epochs: int
    resumed_from_epoch: int
    final: dict[str, MaybeFloat]


# --- clean quality --------------------------------------------------------------------------


class Stat(Result):
    """Mean, standard deviation and range over slices."""

    mean: float
    std: float
    min: float
    max: float


class MethodQuality(Result):
    """Clean PSNR/SSIM of one method on one split."""

    psnr: Stat
    ssim: Stat
    psnr_source: Stat = Field(description="PSNR against the source image, not the FBP reference")
    ssim_source: Stat
    psnr_per_slice: list[float] | None = None


class CleanResult(Result):
    """Clean quality per split and method (stage evaluate)."""

    note: str
    train: dict[str, MethodQuality] | None = None
    val: dict[str, MethodQuality] | None = None
    test: dict[str, MethodQuality] | None = None

    def splits(self) -> dict[str, dict[str, MethodQuality]]:
        """The splits that have slices, in train/val/test order."""
        parts = {"train": self.train, "val": self.val, "test": self.test}
        return {name: table for name, table in parts.items() if table}


# --- attacks --------------------------------------------------------------------------------


class AttackSettings(Result):
    """The PGA settings every attacked method shares."""

    eps: list[float]
    relative: bool
    center: str = Field(description="'nominal' (A x0, Raj eq. 7) or 'measured' (noisy y)")
    n_iter: int
    rel_tol: MaybeFloat = Field(description="per-slice stop on the best error; null: n_iter")
    patience: int
    start: str = Field(description="'cold' (delta = 0) or 'jacobian' (networks)")
    step: float
    momentum: float
    restarts: int
    random_draws: int


class LinearCertificate(Result):
    """Exact worst case of a linear method per eps, bracketed (ctrobust.attacks.certificate)."""

    attained: list[float] = Field(
        description="mean over slices of the error a feasible delta reached"
    )
    upper: list[float] = Field(description="mean over slices of the upper bound on the worst case")
    pga_over_upper: list[float] = Field(description="rho_hat / mean upper bound")
    pga_over_upper_min: list[float] = Field(description="lowest per-slice PGA / upper bound")
    sigma_max: float = Field(description="largest Ritz singular value of R")
    ritz_pairs: int
    lanczos_residual: float = Field(description="||R^T R V - V Theta||_F")
    seconds: float


class StartComparison(Result):
    """PGA from delta = 0 against PGA from the Jacobian's top singular vector, per eps."""

    rho_hat_cold: list[float]
    rho_hat_jacobian: list[float]
    jacobian_wins: list[int] = Field(description="slices where the Jacobian start ended higher")


class MethodAttack(Result):
    """Sinogram-domain worst case of one method, per eps (lists align with ``eps``)."""

    eps: list[float]
    eps_abs_mean: list[float]
    eps_over_noise: list[MaybeFloat] = Field(
        description="eps / ||y - A x0||, mean over slices (null for noise-free data)"
    )
    rho_hat: list[float]
    rho_hat_random: list[float]
    rho_hat_source: list[float] = Field(
        description="worst case maximised against the source image instead of x_gt"
    )
    psnr: list[float]
    ssim: list[float]
    delta_max_per_slice: list[list[float]]
    seconds_per_slice: float
    at_noise: NoiseLevelAttack | None = Field(
        None, description="the attack at eps = each slice's noise norm (the verdict's input)"
    )
    iterations_per_slice: list[list[int]] = Field(description="PGA steps each slice used, per eps")
    start_comparison: StartComparison | None = None
    certificate: LinearCertificate | None = Field(
        None, description="linear methods: the exact worst case against x_gt beside rho_hat"
    )


class ImageIterate(Result):
    """One of Antun's early-stopped iterates r1 < r2 < r3."""

    iteration: int = Field(description="-1 when the level was never reached")
    reached: bool
    r_norm: MaybeFloat
    r_norm_relative: MaybeFloat
    error: MaybeFloat


class GaussianControl(Result):
    """Errors with r1, with r1 plus Gaussian noise of ||r1||/4, and with the noise alone."""

    noise_norm: float
    error_r1: float
    error_r1_plus_noise: float
    error_noise_only: float


class ImageDomainResult(Result):
    """Antun's image-domain ascent on one slice."""

    slice: str
    lam: float
    n_iter: int
    levels: list[float]
    clean_error: float
    iterates: list[ImageIterate]
    gaussian_control: GaussianControl


class AttackResult(Result):
    """Stage attack: rho-hat per method and eps, and Antun's ascent per network."""

    note: str
    settings: AttackSettings
    noise_norm_per_slice: list[float] | None = Field(
        description="||y - A x0||_2 of each attacked slice: the noise already in the data"
    )
    noise_relative_mean: MaybeFloat = Field(description="mean ||y - A x0|| / ||A x0||")
    test_slices: list[str]
    models: dict[str, MethodAttack]
    image_domain: dict[str, ImageDomainResult]


# --- instability ----------------------------------------------------------------------------


class TVCandidate(Result):
    """One TV weight tried on training slices."""

    lam: float
    psnr_mean: float
    psnr: list[float]
    iterations: int
    gap: float
    converged: bool
    data_range: str


class TVChoice(Result):
    """The TV weight chosen for the stable reference, and the TV that is reported."""

    lam: float
    candidates: list[TVCandidate]
    chosen_on: str
    at_edge_of_grid: bool
    stopping: str
    view_rule: str
    test_weights: list[float]


class SIRTChoice(Result):
    """SIRT's iteration count, chosen at its semi-convergence point on training slices."""

    iterations: int
    psnr_by_iteration: list[float]
    chosen_on: str


class DetailScores(Result):
    """Recovery score and PSNR inside the box, one entry per detail."""

    score: list[float]
    psnr_box: list[float]


class DetailsResult(Result):
    """Antun's structural-change test."""

    names: list[str]
    size_mm: float
    contrast_hu: float
    note: str
    methods: dict[str, DetailScores]


class MoreViewsMethod(Result):
    """Mean PSNR/SSIM per view count and the largest drop as views are added."""

    psnr: list[float]
    ssim: list[float]
    max_psnr_drop_db: float
    psnr_source: list[float] | None = None
    ssim_source: list[float] | None = None
    max_psnr_drop_db_source: float | None = None


class MoreViewsResult(Result):
    """Antun's more-samples test."""

    views: list[int]
    note: str
    methods: dict[str, MoreViewsMethod]


class TVAttack(Result):
    """rho-hat of the reported TV (gap stop included) under the attack stage's PGA."""

    eps: list[float]
    rho_hat: list[float]
    slices: int
    pga_iterations: int
    tv_iterations: list[int]
    center: str
    note: str


class ControlFigures(Result):
    """One method's figure in each of Antun's tests and the verdict (True = flagged)."""

    label: str
    role: str
    flagged: dict[str, bool | None]
    expected: dict[str, bool] = {}
    amplification: float | None = None
    score_min: float | None = None
    drop_db: float | None = None


class ControlsResult(Result):
    """Antun's three tests on the networks and on controls of known (in)stability."""

    eps: float
    fbp_amplification: float
    thresholds: dict[str, float]
    methods: dict[str, ControlFigures]
    available: dict[str, str]
    note: str


class InstabilityResult(Result):
    """Stage instability: details, more views, the TV reference and its attack, controls."""

    slices: int
    tv: TVChoice
    sirt: SIRTChoice
    details: DetailsResult
    more_views: MoreViewsResult
    tv_attack: TVAttack | None = None
    controls: ControlsResult | None = None
    seconds: dict[str, float]


# --- export ---------------------------------------------------------------------------------


class ExportedSeries(Result):
    """One source series and the derived kinds written for it."""

    source_series: str
    slices: list[int]
    kinds: list[str]


class ExportResult(Result):
    """Stage export: where the derived series went and which de-identification was applied."""

    series: dict[str, ExportedSeries]
    dicom: str | None
    nifti: str | None
    deidentification: str


# --- linear theory --------------------------------------------------------------------------


class LinearProblem(Result):
    """The Sec. 4.5 matrix A: its singular values, condition number and sample count."""

    singular_values: list[float]
    kappa_A: float  # noqa: N815 - the paper's symbol, as metrics.json spells it
    n_samples: int


class LinearResult(Result):
    """Stage linear (Raj et al. Sec. 4.5): closed form, checks and each trained run.

    The closed-form and per-run blocks carry the figures of docs/linear_theory.md; their
    inner keys are documented there and vary with the runs a config names.
    """

    paper: dict[str, float]
    problem: LinearProblem
    closed_form: dict[str, Any]
    numerical_check: dict[str, Any]
    per_sample_optimum: dict[str, Any] | None = None
    trained: dict[str, dict[str, Any]] = Field(default_factory=dict)


# --- compressive-sensing conditioning study ----------------------------------------------


class CSScheme(Result):
    """One trained f of the CS study: rho-hat per eps of the grid, clean validation MSE."""

    rho_hat: list[float]
    rho_hat_stderr: list[float]
    val_mse: float
    train_seconds: float
    last_epoch: dict[str, float]


class CSMatrix(Result):
    """One measurement matrix of the CS study: its spectrum, the four schemes and the gap."""

    shape: list[int]
    p: int | None
    condition_number: float
    sigma_max: float
    sigma_min: float
    singular_values: list[float]
    y_norm_mean: float
    schemes: dict[str, CSScheme]
    gap: list[float]
    gap_increase: float


class CSConditioningResult(Result):
    """Stage cs (Raj et al. Sec. 4.1-4.3): Gaussian against DCT-submatrix compressive sensing.

    ``gap`` is, per eps, the best non-adversarial rho-hat minus the adversarial one
    (docs/cs_conditioning.md).
    """

    size: str
    patch: int
    m: int
    n: int
    dct_columns: str
    patients: dict[str, list[str]]
    patches: dict[str, int]
    settings: dict[str, Any]
    eps: list[float]
    matrices: dict[str, CSMatrix]
    seconds: float


# --- the whole file -------------------------------------------------------------------------


class Metrics(Result):
    """``metrics.json``: one optional section per stage that ran."""

    methods: dict[str, MethodInfo] | None = None
    data: DataResult | None = None
    training: dict[str, SchemeTraining] | None = None
    clean: CleanResult | None = None
    attack: AttackResult | None = None
    instability: InstabilityResult | None = None
    export: ExportResult | None = None
    linear: LinearResult | None = None
    verdict: VerdictResult | None = None
    cs_conditioning: CSConditioningResult | None = None

    def method_label(self, method: str) -> str:
        """The human name of a method id (the id itself when the run did not describe it)."""
        info = (self.methods or {}).get(method)
        return info.label if info else method

    def is_network(self, method: str) -> bool:
        """Whether a method id is a network (trained here or external)."""
        info = (self.methods or {}).get(method)
        return info is not None and info.kind in (MethodKind.NETWORK, MethodKind.EXTERNAL)


# --- the documented schema ------------------------------------------------------------------


def _type_name(annotation: Any) -> str:
    """A short, readable spelling of a field's type for the docs, e.g. ``dict[str, Stat]``."""
    metadata = getattr(annotation, "__metadata__", None)
    if metadata is not None:  # Annotated[...]: only the underlying type matters to a reader
        return _type_name(annotation.__origin__)
    args = getattr(annotation, "__args__", None)
    origin = getattr(annotation, "__origin__", None)
    if args and origin is not None:
        inner = ", ".join(_type_name(a) for a in args)
        return f"{getattr(origin, '__name__', str(origin))}[{inner}]"
    if args:  # X | Y
        return " | ".join(_type_name(a) for a in args)
    if annotation is type(None):
        return "null"
    return getattr(annotation, "__name__", str(annotation))


def _model_lines(model: type[BaseModel], path: str, seen: set[type]) -> list[str]:
    lines = [f"- `{path}` ({model.__name__}): {(model.__doc__ or '').strip().splitlines()[0]}"]
    nested: list[tuple[type[BaseModel], str]] = []
    for name, field in model.model_fields.items():
        lines.append(f"  - `{name}`: {_type_name(field.annotation)}")
        keyed = "dict[" in _type_name(field.annotation)
        for candidate in _models_in(field.annotation):
            if candidate not in seen:
                seen.add(candidate)
                nested.append((candidate, f"{path}.{name}" + (".<key>" if keyed else "")))
    for child, child_path in nested:
        lines += _model_lines(child, child_path, seen)
    return lines


def _models_in(annotation: Any) -> list[type[BaseModel]]:
    """Result models mentioned anywhere in a type annotation."""
    if isinstance(annotation, type) and issubclass(annotation, Result):
        return [annotation]
    found: list[type[BaseModel]] = []
    for arg in getattr(annotation, "__args__", ()):
        found += _models_in(arg)
    return found


def schema_markdown() -> str:
    """The metrics.json schema as a Markdown list (the generated part of docs/run_folder.md)."""
    seen: set[type] = {Metrics}
    lines = ["<!-- generated by `python -m ctrobust.results`; do not edit by hand -->"]
    for name, field in Metrics.model_fields.items():
        keyed = "dict[" in _type_name(field.annotation)
        for model in _models_in(field.annotation):
            seen.add(model)
            lines += _model_lines(model, name + (".<key>" if keyed else ""), seen)
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    print(schema_markdown(), end="")
