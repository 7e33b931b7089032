"""Engine contracts shared by the trainers: batch preparation, output keys, history on resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from ctrobust.config import RunConfig
from ctrobust.physics import ParallelBeam2D
from ctrobust.simulation import SimulatedSlices
from ctrobust.training.adversarial import create_adversarial_trainer
from ctrobust.training.fit import TrainResult, latest_checkpoint, train_scheme
from ctrobust.training.supervised import create_image_trainer
from pipelines.builders import image_network

COMMON_KEYS = {"loss", "loss_clean", "penalty"}
SCHEME_FIELDS = {"plain": {}, "adversarial": {"adversarial": {"warmup_epochs": 1, "g_hidden": [4]}}}


def _recording_prepare(calls: list[tuple[torch.device, bool]]):
    def prepare(batch, device, non_blocking):
        calls.append((device, non_blocking))
        return batch[0].to(device), batch[1].to(device)

    return prepare


def test_both_trainers_take_ignites_prepare_batch_and_report_the_same_keys(
    device: torch.device, rng: torch.Generator
) -> None:
    x = torch.randn(4, 1, 8, 8, generator=rng)
    net = nn.Conv2d(1, 1, 3, padding=1).to(device)
    calls: list[tuple[torch.device, bool]] = []
    supervised = create_image_trainer(
        net,
        torch.optim.SGD(net.parameters(), lr=1e-3),
        device=device,
        seed=0,
        penalty=lambda n: 1e-3 * n.weight.square().sum(),
        prepare_batch=_recording_prepare(calls),
        non_blocking=True,
    )
    supervised.run([(x + 0.1, x)], max_epochs=1)
    out = supervised.state.output
    assert set(out) >= COMMON_KEYS
    assert out["penalty"] > 0
    assert out["loss"] == pytest.approx(out["loss_clean"] + out["penalty"], rel=1e-6)

    f, G = nn.Linear(3, 3).to(device), nn.Linear(3, 3).to(device)
    opts = torch.optim.SGD(f.parameters(), lr=1e-3), torch.optim.SGD(G.parameters(), lr=1e-3)
    adversarial = create_adversarial_trainer(
        f,
        G,
        *opts,
        eps=0.1,
        device=device,
        prepare_batch=_recording_prepare(calls),
        non_blocking=True,
    )
    y = torch.randn(8, 3, generator=rng)
    adversarial.run([(y, y)], max_epochs=1)
    assert set(adversarial.state.output) >= COMMON_KEYS
    assert calls == [(device, True)] * 2


def _slices(n_slices: int, n: int, op: ParallelBeam2D, rng: torch.Generator) -> SimulatedSlices:
    x = torch.rand(n_slices, 1, n, n, generator=rng, dtype=torch.float32) * 0.02
    y = op.forward(x)
    return SimulatedSlices(
        x_true=x,
        x_gt=x,
        y=y,
        y_clean=y,
        fbp=op.fbp(y),
        pixel_mm=torch.ones(n_slices),
        meta=[{}] * n_slices,
    )


@pytest.mark.parametrize("scheme", ["plain", "adversarial"])
def test_resumed_training_keeps_the_history_of_the_checkpoint(
    tmp_path: Path, device: torch.device, rng: torch.Generator, scheme: str
) -> None:
    """History lives in the checkpoint: a resume redoes the lost epoch, rows match an
    uninterrupted run (the LR schedule and RNG state resume too)."""
    cfg = RunConfig.model_validate(
        {
            "data": {"n": 16},
            "physics": {"views": 12},
            "model": {"channels": [2, 4], "num_res_units": 0},
            "train": {
                "epochs": 3,
                "batch_size": 2,
                "schemes": [{"name": "s", "scheme": scheme, **SCHEME_FIELDS[scheme]}],
            },
        }
    )
    op = ParallelBeam2D(16, 12, device=device)
    train = _slices(4, 16, op, rng)
    val = _slices(2, 16, op, rng)
    args = (cfg.train.schemes[0], cfg, train, val, op)

    def run(folder: Path) -> TrainResult:
        return train_scheme(*args, folder, device, lambda: image_network(cfg), show_progress=False)

    full = run(tmp_path / "full")

    folder = tmp_path / "killed"
    run(folder)
    last = latest_checkpoint(folder)
    assert last is not None and last.name.endswith("_3.pt")
    last.unlink()  # as if killed during the last epoch
    resumed = run(folder)
    assert resumed.resumed_from_epoch == 2
    assert [row["epoch"] for row in resumed.history] == [1, 2, 3]
    for row, reference in zip(resumed.history, full.history, strict=True):
        assert row == pytest.approx(reference, rel=1e-6)
    assert not (folder / "history.json").exists()


def test_a_truncated_newest_checkpoint_is_named_and_the_one_before_resumes(
    tmp_path: Path, device: torch.device, rng: torch.Generator, caplog
) -> None:
    """A kill or a full disk during a save leaves the newest file cut short: the run names it
    and resumes from the intact one before, and the folder keeps at most two checkpoints."""
    cfg = RunConfig.model_validate(
        {
            "data": {"n": 16},
            "physics": {"views": 12},
            "model": {"channels": [2, 4], "num_res_units": 0},
            "train": {"epochs": 3, "batch_size": 2},
        }
    )
    op = ParallelBeam2D(16, 12, device=device)
    args = (cfg.train.schemes[0], cfg, _slices(4, 16, op, rng), None, op)
    folder = tmp_path / "run"
    train_scheme(*args, folder, device, lambda: image_network(cfg), show_progress=False)
    newest = latest_checkpoint(folder)
    assert newest is not None and newest.name.endswith("_3.pt")
    newest.write_bytes(newest.read_bytes()[:100])
    later = cfg.model_copy(update={"train": cfg.train.model_copy(update={"epochs": 5})})
    resumed = train_scheme(
        cfg.train.schemes[0], later, *args[2:], folder, device, lambda: image_network(cfg),
        show_progress=False,
    )  # fmt: skip
    assert resumed.resumed_from_epoch == 2
    assert f"checkpoint {newest} is unreadable" in caplog.text
    assert sorted(p.name for p in folder.glob("checkpoint_*.pt")) == [
        "checkpoint_4.pt",
        "checkpoint_5.pt",
    ]


class _Payload:
    """An arbitrary pickled object, as a tampered checkpoint would carry."""


def test_a_tampered_checkpoint_stops_the_run_naming_it_and_is_kept(
    tmp_path: Path, device: torch.device, rng: torch.Generator
) -> None:
    from ctrobust.runfiles import RefusedFileError

    cfg = RunConfig.model_validate(
        {"data": {"n": 16}, "physics": {"views": 12}, "model": {"channels": [2, 4]}}
    )
    op = ParallelBeam2D(16, 12, device=device)
    folder = tmp_path / "run"
    folder.mkdir()
    tampered = folder / "checkpoint_1.pt"
    torch.save({"payload": _Payload()}, tampered)
    with pytest.raises(RefusedFileError, match="checkpoint_1.pt"):
        train_scheme(
            cfg.train.schemes[0], cfg, _slices(4, 16, op, rng), None, op, folder, device,
            lambda: image_network(cfg), show_progress=False,
        )  # fmt: skip
    assert tampered.exists(), "evidence of tampering is not deleted"
