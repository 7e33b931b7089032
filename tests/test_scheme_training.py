"""The weight-decay, Parseval and adversarial schemes trained two epochs in the tiny CT pipeline,
with their loss terms checked against independent computations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from pydantic import TypeAdapter
from torch import nn

import ctrobust.training.fit as fit
from ctrobust.config import AdversarialConfig, RunConfig, SchemeConfig
from ctrobust.models import FBPConvNet, build_residual_unet
from ctrobust.physics import ParallelBeam2D
from ctrobust.simulation import SliceSource, simulate
from ctrobust.training.adversarial_setup import build_adversarial_engine
from ctrobust.training.fit import train_scheme

N, VIEWS = 32, 24


@pytest.fixture(scope="module")
def tiny_ct():
    """Eight 32 x 32 ellipse slices simulated at 24 views (ground truth at 60), and a config."""
    gen = np.random.default_rng(0)
    yy, xx = np.mgrid[-1:1:64j, -1:1:64j]
    sources = []
    for i in range(8):
        a, b = gen.uniform(0.5, 0.8, 2)
        hu = np.where((xx / a) ** 2 + (yy / b) ** 2 < 1, 0.0, -1000.0)
        cx, cy = gen.uniform(-0.3, 0.3, 2)
        hu[(xx - cx) ** 2 + (yy - cy) ** 2 < 0.02] = 300.0
        sources.append(SliceSource(hu, (1.0, 1.0), "s", f"p{i % 2}", i))
    op = ParallelBeam2D(N, VIEWS, backend="matrix")
    data = simulate(sources, op, ParallelBeam2D(N, 60), i0=1e5)
    cfg = RunConfig.model_validate(
        {
            "name": "schemes",
            "data": {"n": N},
            "physics": {"views": VIEWS, "gt_views": 60},
            "model": {"channels": [4, 8], "num_res_units": 0},
            "train": {"epochs": 2, "batch_size": 4, "augment": True},
        }
    )
    return cfg, op, data


def _train(cfg, op, data, scheme, tmp_path, name):
    def build():
        torch.manual_seed(0)
        return build_residual_unet([4, 8], num_res_units=0)

    return train_scheme(
        scheme,
        cfg,
        data,
        None,
        op,
        tmp_path / name,
        torch.device("cpu"),
        build,
        show_progress=False,
    )


def _scheme(cfg: RunConfig, **fields):
    """A scheme entry validated by the config's own union."""
    return TypeAdapter(SchemeConfig).validate_python(fields)


def _defect(net: nn.Module) -> float:
    """sum ||W W^T - I / k||_F^2 over conv layers on the smaller side, by SVD: the Gram
    matrix's eigenvalues are the squared singular values, plus the zero ones on the larger side."""
    total = 0.0
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            w = m.weight.detach().double().reshape(m.weight.shape[0], -1)
            s2 = torch.linalg.svdvals(w) ** 2
            c = 1.0 / math.prod(m.kernel_size)
            total += float(((s2 - c) ** 2).sum())
        elif isinstance(m, nn.Linear):
            s2 = torch.linalg.svdvals(m.weight.detach().double()) ** 2
            total += float(((s2 - 1.0) ** 2).sum())
    return total


def test_weight_decay_scheme_is_the_explicit_penalty_half_w_sum_squares(
    tiny_ct, tmp_path, monkeypatch
):
    """Adam's coupled weight_decay w trains exactly as plain Adam on loss + (w/2) sum theta^2,
    the paper's eq. 5 with mu = w/2 (docs/adversarial_training.md)."""
    cfg, op, data = tiny_ct
    w = 0.05
    decayed = _train(
        cfg,
        op,
        data,
        _scheme(cfg, name="wd", scheme="weight_decay", weight_decay=w),
        tmp_path,
        "wd",
    )

    plain = _train(cfg, op, data, _scheme(cfg, name="p0", scheme="plain"), tmp_path, "p0")
    moved = max(
        float((a - b).detach().abs().max())
        for a, b in zip(decayed.net.parameters(), plain.net.parameters(), strict=True)
    )
    assert moved > 1e-4  # the decay term changes the training at all

    def by_hand(net: nn.Module) -> torch.Tensor:
        return 0.5 * w * sum((p**2).sum() for p in net.parameters())

    monkeypatch.setattr(fit, "_penalty", lambda scheme: by_hand)
    explicit = _train(cfg, op, data, _scheme(cfg, name="plain", scheme="plain"), tmp_path, "pen")
    assert explicit.history[-1]["penalty"] > 0
    for a, b in zip(decayed.net.parameters(), explicit.net.parameters(), strict=True):
        assert torch.allclose(a, b, rtol=1e-4, atol=1e-6)


def test_parseval_scheme_logs_its_penalty_and_pulls_weights_to_tight_frames(tiny_ct, tmp_path):
    cfg, op, data = tiny_ct
    beta = 0.5
    parseval = _train(
        cfg,
        op,
        data,
        _scheme(cfg, name="pv", scheme="parseval", parseval_beta=beta),
        tmp_path,
        "pv",
    )
    plain = _train(cfg, op, data, _scheme(cfg, name="p0", scheme="plain"), tmp_path, "p0")
    for row in parseval.history:
        assert math.isfinite(row["penalty"]) and row["penalty"] > 0
        assert row["loss"] == pytest.approx(row["loss_clean"] + row["penalty"], rel=1e-6)
    # the logged penalty is beta/2 times the defect of the weights before the last step
    assert parseval.history[-1]["penalty"] == pytest.approx(
        0.5 * beta * _defect(parseval.net), rel=0.05
    )
    print(f"\ndefect: parseval {_defect(parseval.net):.4f}, plain {_defect(plain.net):.4f}")
    assert _defect(parseval.net) < _defect(plain.net)


def test_adversarial_scheme_trains_two_epochs_with_eq6_terms(tiny_ct, tmp_path):
    cfg, op, data = tiny_ct
    adv = {
        "warmup_epochs": 1,
        "g_hidden": [16],
        "eps": 0.05,
        "lam1": 0.5,
        "lam2": -2.0,
        "k_parts": 2,
    }
    result = _train(
        cfg,
        op,
        data,
        _scheme(cfg, name="adv", scheme="adversarial", adversarial=adv),
        tmp_path,
        "adv",
    )
    warm, adversarial = result.history
    assert warm["adversarial"] == 0.0 and "loss_adv" not in warm
    assert adversarial["adversarial"] == 1.0
    for key in ("loss", "loss_clean", "loss_adv", "g_objective", "g_norm_mean"):
        assert math.isfinite(adversarial[key]), key
    assert adversarial["loss"] == pytest.approx(
        adversarial["loss_clean"] + 0.5 * adversarial["loss_adv"], rel=1e-6
    )
    assert any((tmp_path / "adv").glob("*.pt"))


def test_build_adversarial_engine_terms_are_eq6_per_pixel(tiny_ct):
    """With f and G frozen, the engine's logged terms equal eq. 6 by hand divided by N^2."""
    cfg, op, data = tiny_ct
    lam1, lam2, eps = 0.7, -3.0, 1e-4
    scheme = _scheme(
        cfg,
        name="adv",
        scheme="adversarial",
        adversarial=AdversarialConfig(
            warmup_epochs=0, g_hidden=[8], eps=eps, lam1=lam1, lam2=lam2, k_parts=1, g_lr=1e-30
        ).model_dump(),
    )
    torch.manual_seed(0)
    f = FBPConvNet(op, build_residual_unet([4, 8], num_res_units=0))
    frozen = torch.optim.SGD(f.parameters(), lr=0.0)
    engine, extra = build_adversarial_engine(scheme, cfg, f, frozen, data, torch.device("cpu"))
    y, x = data.y[:4], data.x_gt[:4]
    with torch.no_grad():  # G barely moves (lr 1e-30): its output before the step is the same
        delta = extra["generator"](y)
    engine.run([(y, x)], max_epochs=1)
    out = engine.state.output
    pixels = N * N
    with torch.no_grad():
        f.train()
        clean = ((f(y) - x) ** 2).sum(dim=(1, 2, 3)).mean() / pixels
        adv = ((f(y + delta) - x) ** 2).sum(dim=(1, 2, 3)).mean() / pixels
        f.eval()
        rec = ((f(y + delta) - x) ** 2).sum(dim=(1, 2, 3)) / pixels
        budget = eps**2 * (y**2).sum(dim=(1, 2, 3))
        hinge = torch.relu((delta**2).sum(dim=(1, 2, 3)) - budget) / pixels
    assert float(hinge.min()) > 0  # G's output is outside the small budget: lam2 is tested
    assert out["loss_clean"] == pytest.approx(float(clean), rel=1e-4)
    assert out["loss_adv"] == pytest.approx(float(adv), rel=1e-4)
    assert out["g_objective"] == pytest.approx(float((lam1 * rec + lam2 * hinge).mean()), rel=1e-4)
    assert out["loss"] == pytest.approx(float(clean + lam1 * adv), rel=1e-4)
