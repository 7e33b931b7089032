"""Attacks on CT reconstructors: sinogram PGA (Raj eq. 7), random control, Antun's image-domain
ascent with its Gaussian control, rho-hat (Raj eq. 8) and ignite engines to run them over data.
See docs/attacks.md."""

from ctrobust.attacks.engine import (
    concat_results,
    create_attack_engine,
    prepare_attack_batch,
    run_attack_over_loader,
)
from ctrobust.attacks.image_domain import (
    GaussianControlResult,
    ImageDomainResult,
    gaussian_control,
    image_domain_ascent,
)
from ctrobust.attacks.metrics import RhoHat, SliceQuality, rho_hat, slice_quality
from ctrobust.attacks.pga import AttackResult, measurement_pga
from ctrobust.attacks.random_baseline import RandomBaselineResult, random_perturbation_baseline

__all__ = [
    "AttackResult",
    "GaussianControlResult",
    "ImageDomainResult",
    "RandomBaselineResult",
    "RhoHat",
    "SliceQuality",
    "concat_results",
    "create_attack_engine",
    "gaussian_control",
    "image_domain_ascent",
    "measurement_pga",
    "prepare_attack_batch",
    "random_perturbation_baseline",
    "rho_hat",
    "run_attack_over_loader",
    "slice_quality",
]
