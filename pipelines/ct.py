"""The CT robustness pipeline: which stages, in which order, reading which config keys."""

from __future__ import annotations

from ctrobust.config import RunConfig, check_config_keys
from pipelines.pacs_nodes import PULLED_FOLDER
from pipelines.runner import Stage
from pipelines.stages import (
    attack,
    cs,
    evaluate,
    export,
    ingest,
    instability,
    linear,
    pacs_pull,
    pacs_push,
    report,
    simulate,
    train,
    verdict,
)

DATA_KEYS = ("data.folder", "data.max_series", "data.slices_per_series", "data.allow_lossy")
#: What export reads of its section: export.pacs only matters to pacs_push.
EXPORT_KEYS = (
    "export.enabled",
    "export.dicom",
    "export.nifti",
    "export.eps",
    "export.same_study",
    "export.deidentify",
)


def checked(stages: list[Stage]) -> list[Stage]:
    """The stages, once every config key they read is known to exist in the schema."""
    for stage in stages:
        check_config_keys(stage.config_keys, reader=f"stage {stage.name}")
    return stages


def linear_stages() -> list[Stage]:
    """Stages of ``ctrobust run`` for the linear-theory config (Raj et al. Sec. 4.5)."""
    return checked([Stage("linear", linear.run, config_keys=("linear_theory", "seed"))])


def cs_stages() -> list[Stage]:
    """Stages of ``ctrobust run`` for the compressive-sensing study (Raj et al. Sec. 4.1-4.3)."""
    compute = Stage(
        "cs",
        cs.run,
        config_keys=("cs_conditioning", "data.folder", "data.allow_lossy", "seed"),
        inputs=ingest.input_digest,
    )
    report_stage = Stage(
        "cs_report",
        cs.report,
        config_keys=("report", "name"),
        depends_on=("cs",),
        enabled=lambda cfg: cfg.report.enabled,
        writes=("report",),
    )
    return checked([compute, report_stage])


def stages_for(cfg: RunConfig) -> list[Stage]:
    """The linear experiment for a ``linear_theory`` section, the compressive-sensing study
    for a ``cs_conditioning`` section, else CT."""
    if cfg.linear_theory is not None:
        return linear_stages()
    return cs_stages() if cfg.cs_conditioning is not None else ct_stages()


def ct_stages() -> list[Stage]:
    """Stages of ``ctrobust run`` for a CT config, in execution order."""
    stages = [
        Stage(
            "pacs_pull",
            pacs_pull.run,
            config_keys=("data.pacs",),
            enabled=lambda cfg: cfg.data.pacs is not None,
            writes=(PULLED_FOLDER,),
        ),
        Stage(
            "ingest",
            ingest.run,
            config_keys=DATA_KEYS,
            depends_on=("pacs_pull",),
            inputs=ingest.input_digest,
        ),
        Stage(
            "simulate",
            simulate.run,
            config_keys=(
                "data.n",
                "data.test_fraction",
                "data.val_fraction",
                "physics",
                "seed",
                # pseudonyms are drawn here; the date rule only matters to export
                "export.deidentify.enabled",
                "export.deidentify.salt_file",
                "export.deidentify.salt_env",
            ),
            depends_on=("ingest",),
        ),
        Stage(
            "train",
            train.run,
            config_keys=("model", "train", "seed"),
            depends_on=("simulate",),
            distributed=True,
        ),
        Stage("evaluate", evaluate.run, config_keys=("reconstructors",), depends_on=("train",)),
        Stage(
            "attack",
            attack.run,
            config_keys=("attack", "reconstructors"),
            depends_on=("train",),
            enabled=lambda cfg: cfg.attack.enabled,
            distributed=True,
        ),
        Stage(
            "verdict",
            verdict.run,
            config_keys=("verdict",),
            depends_on=("evaluate", "attack"),
            enabled=lambda cfg: cfg.attack.enabled,
        ),
        Stage(
            "instability",
            instability.run,
            config_keys=("instability", "attack", "reconstructors"),
            depends_on=("train",),
            enabled=lambda cfg: cfg.instability.enabled,
        ),
        Stage(
            "export",
            export.run,
            config_keys=(*EXPORT_KEYS, "attack.enabled"),
            depends_on=("evaluate", "attack"),
            enabled=lambda cfg: cfg.export.enabled,
            writes=("dicom", "nifti"),
        ),
        Stage(
            "pacs_push",
            pacs_push.run,
            config_keys=("export.pacs",),
            depends_on=("export",),
            enabled=lambda cfg: cfg.export.enabled and cfg.export.pacs is not None,
        ),
        Stage(
            "report",
            report.run,
            config_keys=("report",),
            depends_on=("evaluate", "attack", "verdict", "instability", "export"),
            enabled=lambda cfg: cfg.report.enabled,
            writes=("report",),
        ),
    ]
    return checked(stages)
