"""Run the stages of a config in order, caching each under the run folder.

A stage's output lives in ``RUN_DIR/cache/<stage>/`` next to ``done.json`` that
records the fingerprint of its inputs: the config sections it reads plus the
fingerprints of the stages it depends on. A re-run skips every stage whose
fingerprint matches, so a changed config recomputes only what it affects. A
stage is written into ``<stage>.partial/`` and renamed when complete, so a crash
or a kill loses at most the stage in progress (training keeps its own ignite
checkpoints and resumes from them).
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

import ctrobust
from ctrobust.config import RunConfig
from ctrobust.distributed import barrier, is_main, world_size
from ctrobust.reconstructors.external import declared_files
from ctrobust.runfiles import atomic_write_json
from pipelines.debris import remove_debris

StageFn = Callable[["RunContext", Path], dict[str, Any]]


@dataclass(frozen=True)
class Stage:
    """A step of the pipeline: what it reads, what it depends on, how it runs."""

    name: str
    run: StageFn
    config_keys: tuple[str, ...]
    depends_on: tuple[str, ...] = ()
    enabled: Callable[[RunConfig], bool] = lambda cfg: True
    distributed: bool = False
    writes: tuple[str, ...] = ()  # run-folder paths written besides cache/<name>/
    #: Digest of what the stage reads outside the run folder (e.g. the DICOM files);
    #: it joins the fingerprint, so a changed input re-runs the stage and all after it.
    inputs: Callable[[RunConfig], str] | None = None


@dataclass
class RunContext:
    """What a stage may use: config, run folder, device, logging, and earlier stages."""

    cfg: RunConfig
    run_dir: Path
    device: torch.device
    log: logging.Logger
    show_progress: bool = True
    metrics: dict[str, Any] = field(default_factory=dict)
    fingerprints: dict[str, str] = field(default_factory=dict)

    def stage_dir(self, name: str) -> Path:
        """The completed output folder of an earlier stage."""
        return self.run_dir / "cache" / name


def resolve_device(name: str) -> torch.device:
    """'auto' picks CUDA when present; asking for CUDA where there is none is a user error."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError(
            f"device: '{name}' requested but CUDA is not available (use cpu or auto)"
        )
    return device


def _config_section(cfg: RunConfig, dotted: str) -> Any:
    node: Any = cfg.model_dump(mode="json")
    for part in dotted.split("."):
        node = node[part]
    return node


def fingerprint(
    stage: Stage, cfg: RunConfig, upstream: dict[str, str], files: list[dict] | None = None
) -> str:
    """Hash of the config sections a stage reads, its inputs' digest, its dependencies' hashes
    and the code version.

    A stage that reads ``reconstructors`` also hashes the models' checksums (``files``), so a
    model replaced at the same path is evaluated again.
    """
    payload = {
        "stage": stage.name,
        "version": ctrobust.__version__,
        "config": {key: _config_section(cfg, key) for key in stage.config_keys},
        "upstream": {dep: upstream[dep] for dep in stage.depends_on if dep in upstream},
    }
    if stage.inputs is not None:
        payload["inputs"] = stage.inputs(cfg)
    if files and "reconstructors" in stage.config_keys:
        payload["files"] = [entry["sha256"] for entry in files]
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def versions() -> dict[str, str]:
    """Versions of what the numbers depend on, for run.json."""
    import astra
    import ignite
    import monai
    import pydicom

    return {
        "ctrobust": ctrobust.__version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "astra": astra.__version__,
        "monai": monai.__version__,
        "ignite": ignite.__version__,
        "pydicom": pydicom.__version__,
        "platform": platform.platform(),
    }


def _outputs(
    run_dir: Path, stage_dir: Path, written: Path, extra: tuple[str, ...]
) -> dict[str, int]:
    """Every file a stage wrote, relative to the run folder, with its size in bytes.

    ``written`` is where the stage wrote its cache folder (renamed to ``stage_dir`` when done);
    ``extra`` are run-folder paths it writes besides (export: ``dicom``, ``nifti``).
    """
    files = {
        str(stage_dir.relative_to(run_dir) / p.relative_to(written)): p.stat().st_size
        for p in sorted(written.rglob("*"))
        if p.is_file() and p.name != "done.json"
    }
    for name in extra:
        for p in sorted((run_dir / name).rglob("*")):
            if p.is_file():
                files[str(p.relative_to(run_dir))] = p.stat().st_size
    return files


def _without_outputs(record: dict[str, Any]) -> dict[str, Any]:
    """A done record for run.json: the file list stays in done.json."""
    return {k: v for k, v in record.items() if k != "outputs"}


def _missing_outputs(run_dir: Path, recorded: dict[str, int]) -> list[str]:
    """Recorded outputs that are gone or have another size now."""
    return [
        name
        for name, size in recorded.items()
        if not (run_dir / name).is_file() or (run_dir / name).stat().st_size != size
    ]


class Runner:
    """Executes stages with caching, timing and a run.json that explains what happened."""

    def __init__(self, stages: list[Stage], ctx: RunContext) -> None:
        self.stages = stages
        self.ctx = ctx
        self.run_json = ctx.run_dir / "run.json"
        self.record: dict[str, Any] = {
            "config": ctx.cfg.model_dump(mode="json"),
            "versions": versions(),
            "seed": ctx.cfg.seed,
            "device": str(ctx.device),
            "processes": world_size(),
            "reconstructors": declared_files(ctx.cfg.reconstructors),
            "stages": {},
        }

    def _save(self) -> None:
        if is_main():
            atomic_write_json(self.run_json, self.record)

    def _merge_metrics(self) -> None:
        metrics: dict[str, Any] = {}
        for stage in self.stages:
            path = self.ctx.stage_dir(stage.name) / "metrics.json"
            if stage.enabled(self.ctx.cfg) and path.exists():
                sections = json.loads(path.read_text())
                # several stages describe the methods they evaluated: keep them all
                methods = {**metrics.get("methods", {}), **sections.pop("methods", {})}
                metrics.update(sections)
                if methods:
                    metrics["methods"] = methods
        self.ctx.metrics = metrics
        if is_main():
            atomic_write_json(self.ctx.run_dir / "metrics.json", metrics)

    def run(self) -> dict[str, Any]:
        """Run every enabled stage not already done with the same fingerprint.

        With several processes every rank walks the same stages: a ``distributed``
        stage runs in all of them, any other on rank 0 while the others wait; only
        rank 0 writes to the run folder.
        """
        upstream: dict[str, str] = {}
        if is_main():
            for path in remove_debris(self.ctx.run_dir):
                self.ctx.log.info("removed %s, left by an interrupted run", path)
            (self.ctx.run_dir / "cache").mkdir(parents=True, exist_ok=True)
        for stage in self.stages:
            entry = self.record["stages"].setdefault(stage.name, {})
            if not stage.enabled(self.ctx.cfg):
                entry.update(status="disabled")
                continue
            fp = fingerprint(stage, self.ctx.cfg, upstream, self.record["reconstructors"])
            upstream[stage.name] = fp
            self.ctx.fingerprints[stage.name] = fp
            out = self.ctx.stage_dir(stage.name)
            barrier()  # every rank sees what rank 0 finished
            done = out / "done.json"
            previous = json.loads(done.read_text()) if done.exists() else {}
            missing = _missing_outputs(self.ctx.run_dir, previous.get("outputs", {}))
            if previous.get("fingerprint") == fp and missing:
                self.ctx.log.warning(
                    "stage %s: %s missing or changed since it ran; recomputing",
                    stage.name,
                    ", ".join(missing[:3]) + (" ..." if len(missing) > 3 else ""),
                )
            elif previous.get("fingerprint") == fp:
                entry.clear()
                entry.update(_without_outputs(previous), status="cached")
                self.ctx.log.info("stage %s: up to date (cached)", stage.name)
                self._save()
                continue
            self._merge_metrics()  # a stage may read metrics.json of the stages before it
            if stage.distributed or is_main():
                self._run_stage(stage, fp, out, entry)
            else:
                entry.update(status="done on rank 0", fingerprint=fp)
            self._merge_metrics()
        barrier()
        self._merge_metrics()
        self._save()
        return self.ctx.metrics

    def _run_stage(self, stage: Stage, fp: str, out: Path, entry: dict[str, Any]) -> None:
        partial = out.with_name(out.name + ".partial")
        if is_main():
            if partial.exists():
                shutil.rmtree(partial)
            partial.mkdir(parents=True)
        if stage.distributed:
            barrier()
        entry.clear()
        entry.update(status="running", fingerprint=fp, started=time.strftime("%Y-%m-%dT%H:%M:%S"))
        self._save()
        self.ctx.log.info("stage %s: running", stage.name)
        start = time.perf_counter()
        try:
            summary = stage.run(self.ctx, partial)
        except BaseException:
            entry.update(status="failed", seconds=round(time.perf_counter() - start, 2))
            self._save()
            raise
        if stage.distributed:
            barrier()
        seconds = round(time.perf_counter() - start, 2)
        done = {
            "fingerprint": fp,
            "seconds": seconds,
            "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
            "summary": summary,
            "outputs": _outputs(self.ctx.run_dir, out, partial, stage.writes) if is_main() else {},
        }
        entry.update(_without_outputs(done), status="done")
        if not is_main():
            return
        atomic_write_json(partial / "done.json", done)
        if out.exists():
            shutil.rmtree(out)
        partial.rename(out)
        self.ctx.log.info("stage %s: done in %.1f s", stage.name, seconds)
        self._save()
