"""Read a finished run folder (docs/run_folder.md) for the report; nothing is recomputed.

``metrics.json`` is validated against :class:`ctrobust.results.Metrics`, so a renamed or
missing key fails here with its path instead of leaving a silent gap in the report. Every
section is optional: a stage that was disabled or has not run yet leaves its section out and
its cache file absent, and the report drops the matching part.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ctrobust.results import Metrics
from ctrobust.runfiles import load_tensors
from ctrobust.selection import slice_label


def _json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text()) if path.exists() else {}


def _tensors(path: Path, mmap: bool = False) -> dict[str, Any] | None:
    return load_tensors(path, mmap=mmap) if path.exists() else None


@dataclass
class RunData:
    """What the report shows: run.json, metrics.json and the cached tensors of a run folder."""

    run_dir: Path
    run: dict[str, Any]
    metrics: Metrics
    simulated: dict[str, Any] | None = None
    test_recons: dict[str, torch.Tensor] | None = None
    attack: dict[str, Any] | None = None
    instability: dict[str, Any] | None = None
    ingest: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, run_dir: Path) -> RunData:
        """Read a run folder; raises FileNotFoundError when it has no metrics.json."""
        run_dir = Path(run_dir)
        if not (run_dir / "metrics.json").exists():
            raise FileNotFoundError(f"'{run_dir}' has no metrics.json: not a ctrobust run folder")
        cache = run_dir / "cache"
        return cls(
            run_dir=run_dir,
            run=_json(run_dir / "run.json"),
            metrics=Metrics.model_validate(_json(run_dir / "metrics.json")),
            simulated=_tensors(cache / "simulate" / "data.pt", mmap=True),
            test_recons=_tensors(cache / "evaluate" / "test_recons.pt"),
            attack=_tensors(cache / "attack" / "results.pt"),
            instability=_tensors(cache / "instability" / "results.pt"),
            ingest=_json(cache / "ingest" / "ingest.json"),
        )

    @property
    def config(self) -> dict[str, Any]:
        return self.run.get("config", {})

    @property
    def name(self) -> str:
        return str(self.config.get("name") or self.run_dir.name)

    @property
    def title(self) -> str:
        """The run folder's name and what data it ran on (never the folder's own name, which
        may identify a patient), with the config's name when it differs."""
        series = len(self.ingest.get("series", []))
        synthetic = (self.config.get("data") or {}).get("folder") is None
        what = "embedded synthetic data" if synthetic else f"clinical data, {series} series"
        config = f", config {self.name}" if self.name != self.run_dir.name else ""
        return f"{self.run_dir.name} ({what}{config})"

    @property
    def schemes(self) -> dict[str, str]:
        """Trained networks: scheme name -> training kind (plain, adversarial, ...)."""
        listed = self.config.get("train", {}).get("schemes", [])
        return {s["name"]: s["scheme"] for s in listed}

    def method_label(self, method: str) -> str:
        """Human name of a method id, e.g. 'FBP, 143 views' or 'plain (network, ...)'."""
        return self.metrics.method_label(method)

    def is_network(self, method: str) -> bool:
        return self.metrics.is_network(method)

    def test_indices(self) -> list[int]:
        """Indices of the test split into the simulated slices."""
        if self.simulated is None:
            return []
        return [int(i) for i in self.simulated["split"].get("test", [])]

    def test_order(self) -> list[int]:
        """Positions in the test split in report order: the attacked slices first, in the
        attack's order (so report index t is also the attack's index), then the others."""
        idx = self.test_indices()
        rows = (self.attack or {}).get("rows")
        if rows is None:
            return list(range(len(idx)))
        where = {row: i for i, row in enumerate(idx)}
        first = [where[int(r)] for r in rows if int(r) in where]
        return first + sorted(set(range(len(idx))) - set(first))

    def position(self, t: int) -> int:
        """Where report slice t sits in the test split (and in evaluate's per-slice lists)."""
        order = self.test_order()
        return order[t] if t < len(order) else t

    def test_meta(self, t: int) -> dict[str, Any]:
        """Series, patient, slice and pixel size of report slice t (empty when unknown)."""
        idx, p = self.test_indices(), self.position(t)
        if p >= len(idx):
            return {}
        slices = self.simulated["slices"]  # type: ignore[index]
        meta = dict(slices["meta"][idx[p]])
        meta["pixel_mm"] = float(slices["pixel_mm"][idx[p]])
        return meta

    def test_label(self, t: int) -> str:
        """The label of report slice t (ctrobust.selection.slice_label), as metrics.json has it."""
        labels = self.metrics.attack.test_slices if self.metrics.attack else []
        if t < len(labels):
            return str(labels[t])
        meta = self.test_meta(t)
        return slice_label(meta) if meta else f"test slice {t}"

    def test_image(self, key: str, t: int) -> torch.Tensor | None:
        """A cached simulated image (x_true, x_gt, fbp) of report slice t, (N, N)."""
        idx, p = self.test_indices(), self.position(t)
        if p >= len(idx):
            return None
        return self.simulated["slices"][key][idx[p]][0]  # type: ignore[index]

    def clean_recon(self, method: str, t: int) -> torch.Tensor | None:
        """The clean reconstruction of report slice t by ``method``, (N, N)."""
        if self.test_recons is None or method not in self.test_recons:
            return None
        recon, p = self.test_recons[method], self.position(t)
        return recon[p][0] if p < len(recon) else None
