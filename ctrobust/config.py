"""Typed, validated run configuration.

A config is data, never code: YAML is read with yaml's safe loader (a key given twice is
refused) and checked against these pydantic models before any work starts. Unknown keys,
wrong types and impossible values stop the run with one line naming the key path.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from importlib.resources.abc import Traversable
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    Tag,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

from ctrobust.physics.units import MU_WATER_PER_MM
from ctrobust.selection import SliceSpec

MAX_COUNT = 2**31 - 1
PositiveInt = Annotated[int, Field(gt=0, le=MAX_COUNT, strict=True)]
"""A count: a whole number (not true/false, not 2.0, not "3"), at least 1."""
PositiveFloat = Annotated[float, Field(gt=0, allow_inf_nan=False)]
NonNegativeFloat = Annotated[float, Field(ge=0, allow_inf_nan=False)]
BatchSize = Annotated[int, Field(gt=0, le=65536, strict=True)]
DEVICES = "cpu, cuda, cuda:N or auto"


class ConfigError(ValueError):
    """A user error in a config: the message is one line naming the key path."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


def _ae_title(title: str) -> str:
    printable = title.isascii() and title.isprintable() and "\\" not in title
    if not (printable and title.strip() and len(title) <= 16):
        raise ValueError(f"'{title}' is not an AE title (1-16 printable ASCII, no backslash)")
    return title


def _uid(uid: str) -> str:
    if not re.fullmatch(r"(0|[1-9][0-9]*)(\.(0|[1-9][0-9]*))*", uid) or len(uid) > 64:
        raise ValueError(f"'{uid}' is not a DICOM UID (digits and dots, at most 64 characters)")
    return uid


AETitle = Annotated[str, AfterValidator(_ae_title)]
DicomUID = Annotated[str, AfterValidator(_uid)]
Port = Annotated[int, Field(ge=1, le=65535, strict=True)]


class PacsNodeConfig(_Strict):
    """A DICOM node (docs/pacs.md): DIMSE (host, port, called_aet) or DICOMweb (a URL).

    Secrets never go in a config: the DICOMweb password is read from the environment variable
    password_env or the file password_file.
    """

    host: str | None = None
    port: Port | None = None
    called_aet: AETitle | None = Field(None, description="the node's AE title")
    calling_aet: AETitle = Field("CTROBUST", description="ctrobust's AE title")
    move_port: Port | None = Field(
        None,
        description="retrieve with C-MOVE to a storage SCP on this port (the node must know "
        "calling_aet at this host and port); null = C-GET",
    )
    tls: bool = Field(False, description="DIMSE over TLS")
    tls_ca_file: Path | None = Field(
        None, description="CA bundle that signed the node's certificate"
    )
    tls_cert_file: Path | None = Field(None, description="ctrobust's certificate (mutual TLS)")
    tls_key_file: Path | None = None
    dicomweb: str | None = Field(
        None, description="DICOMweb root URL instead of DIMSE, e.g. https://pacs/dicom-web"
    )
    username: str | None = Field(None, description="DICOMweb basic-auth user")
    password_env: str | None = Field(
        None, description="environment variable holding the DICOMweb password"
    )
    password_file: Path | None = Field(None, description="file holding the DICOMweb password")
    timeout: PositiveFloat = Field(30.0, description="seconds to wait for the node")

    @model_validator(mode="after")
    def _one_transport(self) -> PacsNodeConfig:
        dimse = {"host": self.host, "port": self.port, "called_aet": self.called_aet}
        if self.dicomweb is not None:
            if any(v is not None for v in dimse.values()):
                raise ValueError("give dicomweb or host, port and called_aet, not both")
            if not re.match(r"https?://", self.dicomweb):
                raise ValueError(f"dicomweb '{self.dicomweb}' is not an http:// or https:// URL")
        elif missing := [k for k, v in dimse.items() if v is None]:
            raise ValueError(f"needs {', '.join(missing)} (DIMSE), or dicomweb (a URL)")
        if (self.password_env or self.password_file) and self.username is None:
            raise ValueError("password_env or password_file needs username")
        return self


class PacsSourceConfig(PacsNodeConfig):
    """The study ``ctrobust run`` pulls into RUN_DIR/cache/pacs_input/study/ before ingest
    (stage pacs_pull)."""

    study_uid: DicomUID
    series_uids: list[DicomUID] = Field(
        default_factory=list,
        description="series to pull; empty = the study's CT series but ctrobust's own outputs",
    )


class PacsDestinationConfig(PacsNodeConfig):
    """Where ``ctrobust run`` pushes the exported DICOM after export (stage pacs_push)."""

    kinds: list[str] = Field(
        default_factory=list,
        description="shell patterns of the exported kinds pushed, e.g. '*attacked*'; empty = all",
    )


class DataConfig(_Strict):
    """Where the slices come from and how they are split into train/val/test."""

    pacs: PacsSourceConfig | None = Field(
        None,
        description="pull this study from a DICOM node (into cache/pacs_input/) and read it",
    )
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
    allow_lossy: bool = Field(
        False,
        description="use lossy-compressed slices (LossyImageCompression 01, JPEG baseline); "
        "false refuses them, as their HU can be hundreds off",
    )

    @field_validator("folder")
    @classmethod
    def _folder_exists(cls, folder: Path | None, info: ValidationInfo) -> Path | None:
        if folder is not None and info.data.get("pacs") is not None:
            raise ValueError(
                "give data.folder or data.pacs, not both (a pull goes to cache/pacs_input/)"
            )
        if folder is not None and not folder.is_dir():
            raise ValueError(f"folder '{folder}' does not exist or is not a directory")
        return folder

    @model_validator(mode="after")
    def _fractions_leave_training_slices(self) -> DataConfig:
        if self.test_fraction + self.val_fraction >= 1:
            raise ValueError(
                f"test_fraction {self.test_fraction} + val_fraction {self.val_fraction} must be "
                "below 1, or no slices are left to train on"
            )
        return self


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

    @model_validator(mode="after")
    def _ground_truth_has_more_views(self) -> PhysicsConfig:
        if self.gt_views < self.views:
            raise ValueError(
                f"gt_views ({self.gt_views}) must be at least views ({self.views}): the ground "
                "truth is the FBP of many more views than are measured"
            )
        return self


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


class _Scheme(_Strict):
    name: str


class PlainScheme(_Scheme):
    """Plain supervised training (MSE on the FBP image)."""

    scheme: Literal["plain"] = "plain"


class WeightDecayScheme(_Scheme):
    """Supervised training with Adam's weight decay mu (paper: mu > 1e-6)."""

    scheme: Literal["weight_decay"]
    weight_decay: PositiveFloat


class ParsevalScheme(_Scheme):
    """Supervised training with the Parseval penalty beta ||W^T W - I||^2 (Raj et al.)."""

    scheme: Literal["parseval"]
    parseval_beta: NonNegativeFloat = 1e-5


class AdversarialScheme(_Scheme):
    """The adversarial G/f min-max of Raj et al. (eq. 6, Algorithm 1)."""

    scheme: Literal["adversarial"]
    adversarial: AdversarialConfig = Field(default_factory=AdversarialConfig)


def _scheme_tag(value: Any) -> str | None:
    """The ``scheme`` of a raw mapping (omitted: plain) or of a built scheme model."""
    if isinstance(value, dict):
        return value.get("scheme", "plain")
    return getattr(value, "scheme", None)


SchemeConfig = Annotated[
    Annotated[PlainScheme, Tag("plain")]
    | Annotated[WeightDecayScheme, Tag("weight_decay")]
    | Annotated[ParsevalScheme, Tag("parseval")]
    | Annotated[AdversarialScheme, Tag("adversarial")],
    Discriminator(_scheme_tag),
]
"""One training scheme of a comparison, told apart by its ``scheme`` key (default plain)."""


class TrainConfig(_Strict):
    """Supervised training shared by all schemes."""

    epochs: PositiveInt = 30
    batch_size: BatchSize = 8
    lr: PositiveFloat = 1e-3
    betas: tuple[float, float] = (0.9, 0.999)
    lr_schedule: Literal["constant", "cosine"] = "cosine"
    augment: bool = True
    checkpoint_every: PositiveInt = 1
    schemes: list[SchemeConfig] = Field(
        default_factory=lambda: [PlainScheme(name="plain")],
        description="networks to train; [] trains none (evaluate external reconstructors only)",
    )

    @field_validator("schemes")
    @classmethod
    def _unique_names(cls, schemes: list[SchemeConfig]) -> list[SchemeConfig]:
        names = [s.name for s in schemes]
        if len(set(names)) != len(names):
            raise ValueError(f"scheme names must be unique, got {names}")
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
    center: Literal["nominal", "measured"] = Field(
        "nominal",
        description="centre of the eps-ball: the noise-free measurement A x0 (Raj eq. 7) or the "
        "noisy measured sinogram y",
    )
    n_iter: PositiveInt = Field(300, description="most PGA steps per slice and start")
    rel_tol: NonNegativeFloat | None = Field(
        1e-3,
        description="a slice stops once its best error grew by at most rel_tol (relative) over "
        "the last `patience` steps; null runs all n_iter (docs/attacks.md)",
    )
    patience: PositiveInt = Field(10, description="window of the rel_tol stop, in PGA steps")
    start: Literal["cold", "jacobian"] = Field(
        "cold",
        description="networks: start at delta = 0, or at eps times the top singular vector of "
        "the reconstructor's Jacobian at the centre (sign that increases the error)",
    )
    jacobian_steps: PositiveInt = Field(8, description="power steps of the Jacobian start")
    certificate: bool = Field(
        True, description="exact worst case of linear methods (FBP) beside the PGA value"
    )
    certificate_rank: PositiveInt = Field(16, description="Ritz pairs of R^T R the bounds use")
    step: PositiveFloat = Field(4.0, description="PGA step as a fraction of eps (docs/attacks.md)")
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.0
    restarts: Annotated[int, Field(ge=0)] = 0
    random_start: bool = False
    random_draws: PositiveInt = 4
    batch_size: BatchSize = 8
    slices: SliceSpec = Field(
        "all",
        description="slices attacked in each chosen test series: all, first:N, every:K, or a "
        "list of source InstanceNumbers / slice labels (ctrobust.selection)",
    )
    series: list[str] | None = Field(
        None,
        description="test series attacked, each named by SeriesInstanceUID, SeriesDescription "
        "or patient; null = every test series",
    )
    max_slices: PositiveInt | None = Field(
        None, description="cap on the attacked slices in all, after slices and series"
    )
    image_domain: ImageDomainAttackConfig = Field(default_factory=ImageDomainAttackConfig)

    @field_validator("eps")
    @classmethod
    def _some_eps(cls, eps: list[float]) -> list[float]:
        if not eps:
            raise ValueError("needs at least one eps")
        return sorted(eps)

    @model_validator(mode="after")
    def _relative_eps_below_one(self) -> AttackConfig:
        if self.relative and max(self.eps) > 1:
            raise ValueError(
                f"eps {max(self.eps):g} is relative to ||y||_2 (attack.relative): above 1 the "
                "perturbation is larger than the measurement; use e.g. 0.05 for 5 %"
            )
        return self


class VerdictConfig(_Strict):
    """Pass/fail thresholds of the per-series verdict, relative to the simulated noise.

    At eps equal to each slice's noise norm ||y - A x0||, a series passes when on every
    slice the worst-case error is at most ``k_ratio`` times the error under Gaussian noise
    of the same norm and the worst-case RMS change of the image is at most ``max_rms_hu``.
    """

    k_ratio: Annotated[float, Field(ge=1)] = 1.5
    max_rms_hu: PositiveFloat = 25.0


class DetailsConfig(_Strict):
    """Structural details inserted into test slices (Antun et al.)."""

    symbols: list[Literal["spades", "hearts", "diamonds", "clubs"]] = Field(
        default_factory=lambda: ["spades", "hearts", "diamonds", "clubs"]
    )
    text: str = "CAN U SEE IT"
    size_mm: PositiveFloat = 20.0
    contrast_hu: float = 100.0


class ControlsConfig(_Strict):
    """Reconstructors known to be unstable (positive) or stable (negative), run through Antun's
    tests next to the networks so the tests show they can tell (docs/instability.md)."""

    enabled: bool = True
    cgls_iter: PositiveInt = Field(
        50, description="CGLS iterations of the unregularised least-squares positive control"
    )
    blur_mm: PositiveFloat = Field(
        8.0, description="Gaussian blur (sigma, mm) of the detail-erasing positive control"
    )
    pga_iter: PositiveInt = Field(10, description="PGA iterations of the amplification test")
    amplification_factor: PositiveFloat = Field(
        2.0,
        description="flag a method whose worst-case amplification exceeds this many times "
        "that of ram-lak FBP (the unregularised analytic inverse) at the run's geometry",
    )
    score_min: PositiveFloat = Field(
        0.5, description="flag a method whose lowest detail recovery score is below this"
    )
    drop_max_db: PositiveFloat = Field(
        0.5, description="flag a method that loses more PSNR than this as views are added"
    )


class InstabilityConfig(_Strict):
    """Structural changes, more views, and the classical stable reference."""

    enabled: bool = True
    views: list[PositiveInt] = Field(default_factory=lambda: [50, 100, 143, 200, 300, 500, 1000])
    tv_weights: list[PositiveFloat] = Field(
        default_factory=lambda: [1.0, 3.0, 10.0, 30.0],
        description="TV weights tried on training slices against the source image (objective "
        "1/2 ||Ax - y||^2 + lam TV(x), y in pixel-unit line integrals), the same at every view "
        "count (the per-bin noise variance does not depend on it); with physics.i0 set they "
        "are beta = lam / sigma^2, sigma^2 each slice's mean per-entry noise variance",
    )
    tv_iter: PositiveInt = Field(1000, description="TV iteration cap")
    tv_tol: PositiveFloat = Field(
        1e-2, description="TV stops when its relative primal-dual gap (P - D) / P is below this"
    )
    sirt_iter_max: PositiveInt = Field(
        300, description="SIRT iterations searched on training slices against the source image"
    )
    attack_tv: bool = Field(True, description="attack TV (the reported TV, gap stop included)")
    tv_attack_iter: PositiveInt | None = Field(
        None, description="PGA iterations of the TV attack; null: attack.n_iter"
    )
    tv_attack_slices: PositiveInt = 1
    tv_attack_eps: list[PositiveFloat] | None = Field(
        None,
        description="budgets of the TV attack (all in one batch); null: attack.eps. The "
        "attack records every TV iteration for the gradient, about 15 MB per budget and "
        "iteration at 512 x 512, so large grids attack fewer budgets",
    )
    max_slices: PositiveInt = 2
    details: DetailsConfig = Field(default_factory=DetailsConfig)
    controls: ControlsConfig = Field(default_factory=ControlsConfig)


class DeidentifyConfig(_Strict):
    """De-identification applied to exported DICOM."""

    enabled: bool = False
    date_shift_days: int | None = Field(None, description="null removes dates instead of shifting")
    salt_file: Path | None = Field(
        None,
        description="file holding the secret salt of the pseudonyms and UIDs (never the salt "
        "itself in a config); else the environment variable salt_env; else a random salt per run",
    )
    salt_env: str = Field(
        "CTROBUST_DEID_SALT", description="environment variable holding the secret salt"
    )


class ExportConfig(_Strict):
    """Derived DICOM and NIfTI series of clean and attacked reconstructions."""

    enabled: bool = True
    dicom: bool = True
    nifti: bool = True
    eps: list[NonNegativeFloat] | None = Field(
        None, description="the eps of attack.eps whose attacked series are exported; null = all"
    )
    same_study: bool = Field(
        False,
        description="file the series in the source's study; by default they get a new "
        "research study, so they never join the clinical one",
    )
    deidentify: DeidentifyConfig = Field(default_factory=DeidentifyConfig)
    pacs: PacsDestinationConfig | None = Field(
        None, description="push the exported DICOM series to this node"
    )

    @model_validator(mode="after")
    def _push_needs_dicom(self) -> ExportConfig:
        if self.pacs is not None and not (self.enabled and self.dicom):
            raise ValueError("export.pacs pushes the exported DICOM: it needs enabled and dicom")
        return self


class ExternalReconstructorConfig(_Strict):
    """A reconstructor under test that ctrobust did not train (docs/external_reconstructors.md).

    Only the declaration is checked here; the model is loaded, and its shape, dtype, device,
    intensity and gradients checked, before the first stage runs.
    """

    name: Annotated[str, Field(pattern=r"^[a-z0-9_]+$")] = Field(
        description="method id in metrics.json and the report"
    )
    format: Literal["torchscript", "onnx", "python", "monai_bundle"]
    path: Path = Field(
        description="file (torchscript, onnx, weights for python) or folder (monai_bundle)"
    )
    factory: str | None = Field(
        None, description="python only: 'package.module:callable' returning an nn.Module"
    )
    input: Literal["fbp", "sinogram"] = Field(
        "fbp", description="fbp: the model maps the FBP image (B,1,n,n); sinogram: y (B,1,V,D)"
    )
    intensity: Literal["relative_attenuation", "hu", "mu_per_mm"] = Field(
        "relative_attenuation", description="units of the model's images"
    )

    @model_validator(mode="after")
    def _declaration(self) -> ExternalReconstructorConfig:
        if self.format == "python":
            module, sep, attr = (self.factory or "").partition(":")
            if not (sep and module and attr):
                raise ValueError("format 'python' needs factory: 'package.module:callable'")
        elif self.factory is not None:
            raise ValueError(f"factory is for format 'python' only, not '{self.format}'")
        if self.format == "monai_bundle" and not self.path.is_dir():
            raise ValueError(f"path '{self.path}' is not a folder (a MONAI bundle is one)")
        if self.format != "monai_bundle" and not self.path.is_file():
            raise ValueError(f"path '{self.path}' does not exist or is not a file")
        return self


class ReportConfig(_Strict):
    """The HTML report for radiologists."""

    enabled: bool = True


class LinearTrainingConfig(_Strict):
    """How one B^ of the Sec. 4.5 check is trained (ctrobust.linear_theory.training)."""

    lam2: Annotated[float, Field(lt=0)] = -10.0
    epochs: PositiveInt = 60
    warmup_epochs: Annotated[int, Field(ge=0)] = 2
    batch_size: PositiveInt = 128
    k_parts: PositiveInt = 4
    g_steps: PositiveInt = 5
    generator: Literal["shared", "mlp"] = Field(
        "shared", description="one learnable delta for all samples (eq. 11) or the paper's MLP"
    )
    g_hidden: tuple[PositiveInt, ...] = (64, 64)
    g_optimizer: Literal["sgd", "adam"] = "sgd"
    g_lr: PositiveFloat = 1.0
    project: bool = Field(True, description="G's output projected onto the eps-ball")
    optimizer: Literal["sgd", "adam"] = "sgd"
    lr: PositiveFloat = 1e-3
    momentum: Annotated[float, Field(ge=0, lt=1)] = 0.9
    precondition: Literal["none", "tikhonov"] = "tikhonov"
    lr_schedule: Literal["constant", "cosine"] = "cosine"
    keep_pairs: bool = Field(True, description="batches of whole antithetic pairs")


_DEFAULT_LINEAR_RUNS: dict[str, dict[str, Any]] = {"shared": {"generator": "shared"}}


class LinearTheoryConfig(_Strict):
    """Raj et al. Sec. 4.5: the closed-form robust inverse against B^ trained by the G/f engine.

    ``training`` holds the settings shared by every run; each entry of ``runs`` names a
    trained B^ and overrides some of them (validated merged: a run is ``training`` updated
    by its own keys).
    """

    n: PositiveInt = 20
    m: PositiveInt = 10
    n_samples: PositiveInt = 50_000
    small_singular_values: list[PositiveFloat] = Field(default_factory=lambda: [1e-3, 1e-4])
    entry_variance: PositiveFloat = 0.1
    normalize: bool = Field(True, description="sample mean exactly 0, sample covariance I")
    antithetic: bool = Field(True, description="samples stored as (x, -x) pairs")
    lam: PositiveFloat = 1.0
    eps: PositiveFloat = 0.1
    per_sample_optimum: bool = True
    training: LinearTrainingConfig = Field(default_factory=LinearTrainingConfig)
    runs: dict[str, LinearTrainingConfig] = Field(
        default_factory=lambda: {"shared": LinearTrainingConfig()}, min_length=1
    )

    @model_validator(mode="before")
    @classmethod
    def _runs_extend_training(cls, data: Any) -> Any:
        """Each run is the shared ``training`` block updated by the run's own keys."""
        if not isinstance(data, dict):
            return data
        shared = data.get("training", {})
        if isinstance(shared, LinearTrainingConfig):
            shared = shared.model_dump(exclude_unset=True)
        runs = data.get("runs", _DEFAULT_LINEAR_RUNS)
        if not isinstance(shared, dict) or not isinstance(runs, dict):
            return data
        merged = {
            name: {**shared, **run} if isinstance(run, dict) else run for name, run in runs.items()
        }
        return {**data, "runs": merged}


class CSConditioningConfig(_Strict):
    """Raj et al. Sec. 4.1-4.3: compressive sensing with a Gaussian and a DCT-submatrix A.

    Every ``None`` takes the paper's value for ``size`` (ctrobust.cs.sizes,
    docs/cs_conditioning.md).
    """

    size: Literal["small", "large"] = Field(
        "small", description="small: 28 x 28 patches, m = 100; large: 64 x 64, m = 333"
    )
    dct_oversampling: PositiveInt = Field(4, description="the DCT is p x p with p = this times n")
    dct_columns: Literal["first", "random"] = Field(
        "first",
        description="the DCT submatrix's n columns: the first n (ill-conditioned, the paper's "
        "kappa) or n random ones (as well-conditioned as the Gaussian)",
    )
    demo_patients: Annotated[int, Field(ge=3, le=99, strict=True)] = Field(
        5, description="synthetic patients written when data.folder is null"
    )
    slices_per_patient: PositiveInt | None = Field(None, description="evenly spaced; null = all")
    grid: PositiveInt | None = Field(None, description="slices resampled to grid x grid first")
    stride: PositiveInt | None = Field(None, description="patch step in pixels")
    min_body_fraction: Annotated[float, Field(ge=0, le=1)] = Field(
        0.5, description="patches with less than this share of non-air pixels are dropped"
    )
    max_train: PositiveInt | None = Field(None, description="training patches kept (random)")
    max_test: PositiveInt | None = Field(256, description="test patches attacked (random)")
    epochs: PositiveInt = 10
    batch_size: BatchSize = 128
    lr: PositiveFloat = 1e-4
    width: PositiveInt | None = Field(None, description="channels of f's layers")
    g_width: PositiveInt = Field(256, description="hidden width of G's fully connected layers")
    g_lr: PositiveFloat | None = Field(None, description="G's Adam learning rate; null = lr")
    project: bool = Field(
        True,
        description="G's output projected onto the train_eps ball; false is the paper's "
        "unconstrained G, which lam2 = -0.1 does not hold on the ball (docs/cs_conditioning.md)",
    )
    k_parts: PositiveInt = 4
    g_steps: PositiveInt = 1
    weight_decay: PositiveFloat = Field(1e-5, description="mu of the weight-decay scheme")
    parseval_beta: PositiveFloat = 1e-5
    lam1: PositiveFloat | None = None
    lam2: Annotated[float, Field(lt=0)] | None = None
    train_eps: PositiveFloat | None = None
    eval_eps: list[NonNegativeFloat] | None = Field(None, min_length=1)
    pga_iterations: PositiveInt = Field(40, description="the CT attack's default")
    pga_step: PositiveFloat = 1.0
    pga_momentum: Annotated[float, Field(ge=0, lt=1)] = 0.5
    shown: PositiveInt = Field(6, description="test patches in the qualitative rows")


class RunConfig(_Strict):
    """A whole pipeline run."""

    name: str = "run"
    seed: int = 0
    device: str = Field("cpu", description=DEVICES)
    data: DataConfig = Field(default_factory=DataConfig)
    physics: PhysicsConfig = Field(default_factory=PhysicsConfig)
    model: ModelConfig = Field(default_factory=ModelConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    attack: AttackConfig = Field(default_factory=AttackConfig)
    instability: InstabilityConfig = Field(default_factory=InstabilityConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    report: ReportConfig = Field(default_factory=ReportConfig)
    verdict: VerdictConfig = Field(default_factory=VerdictConfig)
    reconstructors: list[ExternalReconstructorConfig] = Field(
        default_factory=list,
        description="reconstructors under test that ctrobust did not train",
    )
    linear_theory: LinearTheoryConfig | None = Field(
        None,
        description="set for the Sec. 4.5 linear check (configs/linear_theory.yaml): "
        "the run is then the linear experiment instead of the CT pipeline",
    )
    cs_conditioning: CSConditioningConfig | None = Field(
        None,
        description="set for the Sec. 4.1-4.3 compressive-sensing study "
        "(configs/cs_conditioning.yaml): the run is then that study instead of the CT pipeline",
    )

    @field_validator("reconstructors")
    @classmethod
    def _method_names_distinct(
        cls, specs: list[ExternalReconstructorConfig], info: ValidationInfo
    ) -> list[ExternalReconstructorConfig]:
        train = info.data.get("train")
        taken = {s.name: "a train.schemes name" for s in (train.schemes if train else [])}
        for spec in specs:
            if re.fullmatch(r"fbp\d+|tv|sirt", spec.name):
                clash = "a built-in method id (fbp<views>, tv, sirt)"
            else:
                clash = taken.get(spec.name)
            if clash:
                raise ValueError(f"name '{spec.name}' is already {clash}")
            taken[spec.name] = "another reconstructor's name"
        return specs

    @field_validator("device")
    @classmethod
    def _known_device(cls, device: str) -> str:
        if not re.fullmatch(r"cpu|auto|cuda(:\d+)?", device):
            raise ValueError(f"'{device}' is not a device ctrobust runs on ({DEVICES})")
        return device

    @model_validator(mode="after")
    def _one_experiment(self) -> RunConfig:
        if self.linear_theory is not None and self.cs_conditioning is not None:
            raise ValueError("set linear_theory or cs_conditioning, not both: each is a whole run")
        return self

    @model_validator(mode="after")
    def _grid_fits_the_network(self) -> RunConfig:
        factor = 2 ** (len(self.model.channels) - 1)
        if self.data.n % factor:
            raise ValueError(
                f"data.n = {self.data.n} cannot pass through the U-Net's "
                f"{len(self.model.channels)} levels (model.channels): it needs a multiple of "
                f"{factor}, e.g. {max(factor, self.data.n // factor * factor)}"
            )
        return self

    @model_validator(mode="after")
    def _exported_eps_are_attacked(self) -> RunConfig:
        missing = sorted(set(self.export.eps or []) - set(self.attack.eps))
        if missing:
            raise ValueError(
                f"export.eps {missing} are not in attack.eps {list(self.attack.eps)}: only "
                "attacked eps can be exported"
            )
        return self


def _strip(annotation: Any) -> Any:
    """The annotation without ``Annotated`` metadata and without ``| None``."""
    while get_origin(annotation) is Annotated:
        annotation = get_args(annotation)[0]
    if get_origin(annotation) in (Union, UnionType):
        members = [a for a in get_args(annotation) if a is not type(None)]
        if len(members) == 1:
            return _strip(members[0])
    return annotation


def _union_tags(annotation: Any) -> dict[str, Any]:
    """Tag -> member of a discriminated union annotation ({} for anything else)."""
    if get_origin(annotation) not in (Union, UnionType):
        return {}
    tags = {}
    for member in get_args(annotation):
        if get_origin(member) is Annotated:
            model, *metadata = get_args(member)
            tags.update({m.tag: model for m in metadata if isinstance(m, Tag)})
    return tags


def _is_model(annotation: Any) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, BaseModel)


def _display_path(loc: tuple[int | str, ...]) -> str:
    """The key path of an error location, without pydantic's union tags (``plain`` etc.)."""
    node: Any = RunConfig
    shown: list[str] = []
    for part in loc:
        node = _strip(node)
        tags = _union_tags(node)
        if part in tags:
            node = tags[part]
            continue
        shown.append(str(part))
        if _is_model(node) and part in node.model_fields:
            node = node.model_fields[part].annotation
        elif get_origin(node) in (list, tuple) and isinstance(part, int):
            args = [a for a in get_args(node) if a is not Ellipsis]
            node = args[min(part, len(args) - 1)]
        elif get_origin(node) is dict:
            node = get_args(node)[1]
        else:
            node = None
    return ".".join(shown)


def _format_error(source: str, error: ValidationError) -> str:
    """One line per problem, naming the key path and what is expected."""
    first = error.errors()[0]
    path = _display_path(first["loc"])
    message = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        message = "unknown key"
    extra = f" (and {len(error.errors()) - 1} more)" if len(error.errors()) > 1 else ""
    # a check across sections names its keys in the message itself
    return f"{source}: {path}: {message}{extra}" if path else f"{source}: {message}{extra}"


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml's safe loader, refusing a key given twice in one mapping (YAML keeps the last)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                line = key_node.start_mark.line + 1
                raise yaml.constructor.ConstructorError(
                    None, None, f"key '{key}' appears twice (line {line})", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def check_config_keys(paths: Iterable[str], *, reader: str = "a stage") -> None:
    """Raise ConfigError unless every dotted path names a section or key of RunConfig.

    The runner's stage list declares the keys each stage reads (they make its cache
    fingerprint); checking them against the schema when the list is built turns a
    misspelled key into an error at start instead of a KeyError hours into a run.
    """
    for path in paths:
        node: Any = RunConfig
        for part in path.split("."):
            node = _strip(node)
            candidates = list(_union_tags(node).values()) or [node]
            found = [
                c.model_fields[part] for c in candidates if _is_model(c) and part in c.model_fields
            ]
            if not found:
                raise ConfigError(f"{reader} reads config key '{path}', which the schema lacks")
            node = found[0].annotation


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
    try:
        node[parts[-1]] = yaml.load(raw, Loader=_UniqueKeyLoader)
    except yaml.YAMLError as error:
        first = str(error).splitlines()[0]
        raise ConfigError(f"--set {key}: not a valid YAML value {raw!r}: {first}") from None


def load_config(path: Path | Traversable, overrides: list[str] | None = None) -> RunConfig:
    """Read, override and validate a YAML config (a file, or shipped package data).

    Relative folders in it resolve against the cwd.
    """
    source = str(path)
    try:
        tree = yaml.load(path.read_text(), Loader=_UniqueKeyLoader) or {}
    except FileNotFoundError:
        raise ConfigError(f"config file '{path}' not found") from None
    except IsADirectoryError:
        raise ConfigError(f"config '{path}' is a folder, not a YAML file") from None
    except UnicodeDecodeError:
        raise ConfigError(f"config '{path}' is not a text (YAML) file") from None
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
