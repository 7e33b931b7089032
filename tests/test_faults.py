"""After a fault: leftovers of killed writers are removed, and lost outputs are recomputed."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from ctrobust.config import RunConfig
from ctrobust.runfiles import atomic_write_json
from pipelines.debris import remove_debris
from pipelines.runner import RunContext, Runner, Stage


def _debris(run: Path) -> list[Path]:
    """One leftover of every kind a killed writer can leave."""
    paths = [
        run / "cache" / "train.partial" / "plain.pt",
        run / "cache" / "ingest" / ".ingest.json.k2j4h1.tmp",
        run / "dicom" / "s01_1234" / ".plain_clean.a8d7_x.partial" / "0001.dcm",
        run / "dicom" / "s01_1234" / ".plain_clean.zz81q.old" / "replaced" / "0001.dcm",
        run / "checkpoints" / "plain" / "tmpa81hx3z",
        run / "checkpoints" / "plain" / ".history.json.1kdf.tmp",
    ]
    for path in paths:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"half")
    return paths


def test_every_kind_of_leftover_is_removed_and_nothing_else(tmp_path: Path):
    keep = [
        tmp_path / "cache" / "train" / "plain.pt",
        tmp_path / "checkpoints" / "plain" / "checkpoint_2.pt",
        tmp_path / "dicom" / "s01_1234" / "plain_clean" / "0001.dcm",
        tmp_path / "report" / "index.html",
        tmp_path / "temperature.txt",
    ]
    for path in keep:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"done")
    leftovers = _debris(tmp_path)
    removed = remove_debris(tmp_path)
    assert all(not p.exists() for p in leftovers)
    assert all(p.exists() for p in keep)
    assert sorted(p.name for p in removed) == sorted(
        [
            ".history.json.1kdf.tmp",
            ".ingest.json.k2j4h1.tmp",
            ".plain_clean.a8d7_x.partial",
            ".plain_clean.zz81q.old",
            "tmpa81hx3z",
            "train.partial",
        ]
    ), "folders go whole, not file by file"


def _runner(run_dir: Path, calls: list[str]) -> Runner:
    def first(ctx: RunContext, out: Path) -> dict:
        calls.append("first")
        atomic_write_json(out / "metrics.json", {})
        (out / "values.txt").write_text("1 2 3")
        return {}

    def second(ctx: RunContext, out: Path) -> dict:
        calls.append("second")
        (ctx.run_dir / "dicom").mkdir(exist_ok=True)
        (ctx.run_dir / "dicom" / "a.dcm").write_text("x")
        return {}

    stages = [
        Stage("first", first, config_keys=("seed",)),
        Stage("second", second, config_keys=(), depends_on=("first",), writes=("dicom",)),
    ]
    ctx = RunContext(RunConfig(), run_dir, torch.device("cpu"), logging.getLogger("test"))
    return Runner(stages, ctx)


def test_a_stage_whose_outputs_were_deleted_is_recomputed(tmp_path: Path):
    calls: list[str] = []
    _runner(tmp_path, calls).run()
    _runner(tmp_path, calls).run()
    assert calls == ["first", "second"], "a finished run recomputes nothing"
    (tmp_path / "dicom" / "a.dcm").unlink()
    _runner(tmp_path, calls).run()
    assert calls == ["first", "second", "second"]
    (tmp_path / "cache" / "first" / "values.txt").write_text("changed by hand")
    _runner(tmp_path, calls).run()
    assert calls[-1] == "first"


def test_a_run_starts_by_removing_leftovers(tmp_path: Path):
    leftovers = _debris(tmp_path)
    _runner(tmp_path, []).run()
    assert all(not p.exists() for p in leftovers)
