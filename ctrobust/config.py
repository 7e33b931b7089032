"""Typed, validated run configuration.

A config is data, never code: YAML is read with ``yaml.safe_load`` and checked
against these pydantic models before any work starts. Unknown keys, wrong types
and impossible values stop the run with one line naming the key path.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from ctrobust.physics.units import MU_WATER_PER_MM

PositiveInt = Annotated[int, Field(gt=0)]
PositiveFloat = Annotated[float, Field(gt=0)]
NonNegativeFloat = Annotated[float, Field(ge=0)]


class ConfigError(ValueError):
    """A user error in a config: the message is one line naming the key path."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DataConfig(_Strict):
    """Where the slices come from and how they are split into train/val/test."""

    folder: Path | None = Field(
        None, description="clinical DICOM folder; null = the embedded synthetic demo folder"
    )
    n: PositiveInt = Field(128, description="reconstruction grid (n x n pixels)")
    slices_per_series: PositiveInt | None = Field(
        None, description="evenly spaced slices taken from each series; null = all"
    )
    test_fraction: Annotated[float, Field(gt=0, lt=1)] = Field(
        0.34, description="share of patients (or, with one patient, of slices) held out"
    )
    val_fraction: Annotated[float, Field(ge=0, lt=1)] = 0.0
    max_series: PositiveInt | None = None

    @field_validator("folder")
    @classmethod
    def _folder_exists(cls, folder: Path | None) -> Path | None:
        if folder is not None and not folder.is_dir():
            raise ValueError(f"folder '{folder}' does not exist or is not a directory")
        return folder


class PhysicsConfig(_Strict):
    """Parallel-beam geometry and the low-dose measurement model."""

    views: PositiveInt = Field(143, description="views of the measured (input) sinogram")
    gt_views: PositiveInt = Field(1000, description="views of the FBP ground truth")
    n_det: PositiveInt | None = None
    i0: PositiveFloat | None = Field(
        None, description="photons per detector pixel of the input sinogram; null = noise-free"
    )
    mu_water_per_mm: PositiveFloat = MU_WATER_PER_MM
    filter: Literal["ram-lak", "shepp-logan", "cosine", "hann"] = "ram-lak"


class ModelConfig(_Strict):
    """FBPConvNet's U-Net."""

    channels: list[PositiveInt] = Field(default_factory=lambda: [16, 32, 64, 128])
    num_res_units: Annotated[int, Field(ge=0)] = 1
    dropout: Annotated[float, Field(ge=0, lt=1)] = 0.0

    @field_validator("channels")
    @classmethod
    def _levels(cls, channels: list[int]) -> list[int]:
        if len(channels) < 2:
            raise ValueError("needs at least two levels, e.g. [16, 32, 64]")
        return channels


class AdversarialConfig(_Strict):
    """Raj et al. eq. 6 / Algorithm 1 settings for the G/f min-max."""

    eps: PositiveFloat = Field(
        0.02, description="perturbation budget, relative to ||y|| if relative"
    )
    relative: bool = True
    lam1: NonNegativeFloat = 1.0
    lam2: Annotated[float, Field(lt=0)] = -1.0
    k_parts: PositiveInt = 4
    g_steps: PositiveInt = 1
    warmup_epochs: Annotated[int, Field(ge=0)] = 5
    g_hidden: list[PositiveInt] = Field(default_factory=lambda: [256, 256, 256, 256, 256])
    g_lr: PositiveFloat = 1e-4
    f_lr: PositiveFloat = Field(
        1e-4, description="f's learning rate; f uses the paper's Adam(betas=(0.5, 0.999))"
    )


class SchemeConfig(_Strict):
    """One training scheme of a comparison (plain, weight decay, Parseval, adversarial)."""

    name: str
    scheme: Literal["plain", "weight_decay", "parseval", "adversarial"] = "plain"
    weight_decay: NonNegativeFloat = 0.0
    parseval_beta: NonNegativeFloat = 1e-5
    adversarial: AdversarialConfig | None = None

    @model_validator(mode="after")
    def _scheme_fields(self) -> SchemeConfig:
        if self.scheme == "weight_decay" and self.weight_decay <= 0:
            raise ValueError("scheme 'weight_decay' needs weight_decay > 0 (paper: mu > 1e-6)")
        if self.scheme == "adversarial" and self.adversarial is None:
            object.__setattr__(self, "adversarial", AdversarialConfig())
        return self


class TrainConfig(_Strict):
    """Supervised training shared by all schemes."""

    epochs: PositiveInt = 30
    batch_size: PositiveInt = 8
    lr: PositiveFloat = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    lr_schedule: Literal["constant", "cosine"] = "cosine"
    augment: bool = True
    checkpoint_every: PositiveInt = 1
    schemes: list[SchemeConfig] = Field(
        default_factory=lambda: [SchemeConfig(name="plain", scheme="plain")]
    )

    @field_validator("schemes")
    @classmethod
    def _unique_names(cls, schemes: list[SchemeConfig]) -> list[SchemeConfig]:
        names = [s.name for s in schemes]
        if len(set(names)) != len(names):
            raise ValueError(f"scheme names must be unique, got {names}")
        if not schemes:
            raise ValueError("needs at least one scheme")
        return schemes


class ImageDomainAttackConfig(_Strict):
    """Antun et al.'s Q(r) ascent in the image domain."""

    enabled: bool = True
    lam: NonNegativeFloat = 0.01
    n_iter: PositiveInt = 200
    step: PositiveFloat = 0.01
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    levels: tuple[PositiveFloat, PositiveFloat, PositiveFloat] = Field(
        (0.01, 0.02, 0.04),
        description="r1, r2, r3 are the first iterates with ||r|| >= level ||x||",
    )
    slices: PositiveInt = 1

    @field_validator("levels")
    @classmethod
    def _increasing(cls, levels: tuple[float, float, float]) -> tuple[float, float, float]:
        if not levels[0] < levels[1] < levels[2]:
            raise ValueError("must increase strictly (r1 < r2 < r3)")
        return levels


class AttackConfig(_Strict):
    """Sinogram-domain PGA (Raj eq. 7-8) over a list of eps, plus a random baseline."""

    enabled: bool = True
    eps: list[NonNegativeFloat] = Field(default_factory=lambda: [0.005, 0.01, 0.02, 0.05])
    relative: bool = Field(True, description="eps relative to ||y||_2 per slice")
    n_iter: PositiveInt = 40
    step: PositiveFloat = Field(1.0, description="PGA step as a fraction of eps (docs/attacks.md)")
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.5
    restarts: Annotated[int, Field(ge=0)] = 0
    random_start: bool = False
    random_draws: PositiveInt = 4
    batch_size: PositiveInt = 8
    max_slices: PositiveInt | None = None
    image_domain: ImageDomainAttackConfig = Field(default_factory=ImageDomainAttackConfig)

    @field_validator("eps")
    @classmethod
    def _some_eps(cls, eps: list[float]) -> list[float]:
        if not eps:
            raise ValueError("needs at least one eps")
        return sorted(eps)


class DetailsConfig(_Strict):
    """Structural details inserted into test slices (Antun et al.)."""

    symbols: list[Literal["spades", "hearts", "diamonds", "clubs"]] = Field(
        default_factory=lambda: ["spades", "hearts", "diamonds", "clubs"]
    )
    text: str = "CAN U SEE IT"
    size_mm: PositiveFloat = 20.0
    contrast_hu: float = 100.0


class InstabilityConfig(_Strict):
    """Structural changes, more views, and the classical stable reference."""

    enabled: bool = True
    views: list[PositiveInt] = Field(default_factory=lambda: [50, 100, 143, 200, 300, 500, 1000])
    tv_weights: list[PositiveFloat] = Field(
        default_factory=lambda: [1.0, 3.0, 10.0, 30.0],
        description="TV weights tried on training slices (objective 1/2 ||Ax - y||^2 + lam TV(x),"
        " y in pixel-unit line integrals); 3 was best at 128 x 128, 143 views, I0 1e5",
    )
    tv_iter: PositiveInt = 200
    tv_tol: PositiveFloat = 1e-4
    attack_tv: bool = Field(True, description="attack TV through its unrolled iterations")
    tv_unrolled_iter: PositiveInt = 50
    tv_attack_slices: PositiveInt = 1
    max_slices: PositiveInt = 2
    details: DetailsConfig = Field(default_factory=DetailsConfig)


class DeidentifyConfig(_Strict):
    """De-identification applied to exported DICOM."""

    enabled: bool = False
    date_shift_days: int | None = Field(None, description="null removes dates instead of shifting")
    salt: str = "ctrobust"


class ExportConfig(_Strict):
    """Derived DICOM and NIfTI series of clean and attacked reconstructions."""

    enabled: bool = True
    dicom: bool = True
    nifti: bool = True
    deidentify: DeidentifyConfig = Field(default_factory=DeidentifyConfig)


class ReportConfig(_Strict):
    """The HTML report for radiologists."""

    enabled: bool = True


class RunConfig(_Strict):
    """A whole pipeline run."""

    name: str = "run"
    seed: int = 0
    device: str = Field("cpu", description="'cpu', 'cuda', 'cuda:1' or 'auto'")
    data: DataConfig = Field(default_factory=DataConfig)
    physics: PhysicsConfig = Field(default_factory=PhysicsConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    attack: AttackConfig = Field(default_factory=AttackConfig)
    instability: InstabilityConfig = Field(default_factory=InstabilityConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)
    linear_theory: dict[str, Any] | None = Field(
        None,
        description="set for the Sec. 4.5 linear check (configs/linear_theory.yaml): "
        "the run is then the linear experiment instead of the CT pipeline",
    )

    @field_validator("linear_theory")
    @classmethod
    def _linear_keys(cls, section: dict[str, Any] | None) -> dict[str, Any] | None:
        if section is not None:
            from ctrobust.linear_theory.run import resolve_config

            resolve_config(section)  # raises ValueError naming an unknown key
        return section


def _format_error(source: str, error: ValidationError) -> str:
    """One line per problem, naming the key path and what is expected."""
    first = error.errors()[0]
    path = ".".join(str(p) for p in first["loc"]) or "<root>"
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    extra = f" (and {len(error.errors()) - 1} more)" if len(error.errors()) > 1 else ""
    return f"{source}: {path}: {message}{extra}"


def _apply_override(tree: dict[str, Any], assignment: str, source: str) -> None:
    """Set ``key.path=value`` in a nested dict; the value is parsed as YAML data."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set {assignment!r}: expected key.path=value")
    node = tree
    parts = key.split(".")
    for part in parts[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise ConfigError(f"{source}: --set {key}: '{part}' is not a section")
        node = child
    node[parts[-1]] = yaml.safe_load(raw)


def load_config(path: Path, overrides: list[str] | None = None) -> RunConfig:
    """Read, override and validate a YAML config; relative folders resolve against the cwd."""
    source = str(path)
    try:
        tree = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file '{path}' not found") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{source}: not valid YAML: {str(error).splitlines()[0]}") from None
    if not isinstance(tree, dict):
        raise ConfigError(f"{source}: the top level must be a mapping of keys")
    for assignment in overrides or []:
        _apply_override(tree, assignment, source)
    try:
        return RunConfig.model_validate(tree)
    except ValidationError as error:
        raise ConfigError(_format_error(source, error)) from None
