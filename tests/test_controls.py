"""Antun's tests flag the positive controls and pass the negative control, in a tiny setting."""

from __future__ import annotations

import torch

from ctrobust.attacks.pga import measurement_pga
from ctrobust.instability import evaluate_detail, insert_detail, render_symbols, shepp_logan_head
from ctrobust.instability.controls import (
    BlurredFBPControl,
    CGLSControl,
    HannFBPControl,
    Thresholds,
    amplification,
    cgls,
    verdicts,
)
from ctrobust.physics import ParallelBeam2D
from ctrobust.physics.units import add_poisson_noise
from ctrobust.reconstructors import FBP

N, VIEWS = 32, 24


def _attack(f, y, target, eps):
    return measurement_pga(f, y, target, eps, n_iter=20, relative=True)


def test_cgls_solves_least_squares_on_a_consistent_system():
    op = ParallelBeam2D(N, VIEWS, dtype=torch.float64)
    x = shepp_logan_head(N, torch.float64)
    y = op.A(x)
    rec = cgls(op, y, 200)
    assert float((op.A(rec) - y).norm() / y.norm()) < 1e-3


def test_tests_flag_the_positive_controls_and_pass_the_negative_control():
    torch.manual_seed(0)
    op = ParallelBeam2D(N, VIEWS)
    x = shepp_logan_head(N)
    y = add_poisson_noise(op.A(x), 1e5, 8.0, torch.Generator().manual_seed(0))
    fbp = FBP(op)
    methods = {
        "cgls": CGLSControl(op, n_iter=100),
        "blur": BlurredFBPControl(op, sigma_px=3.0),
        "hann": HannFBPControl(op),
    }
    kappa = {name: float(amplification(f, y, 0.005, _attack)) for name, f in methods.items()}
    kappa_fbp = float(amplification(fbp, y, 0.005, _attack))
    mask = render_symbols(N, "\u2665", height=8)
    insertion = insert_detail(x, mask, 300.0)
    scores = evaluate_detail(methods, op, x, insertion)
    figures = {
        name: {"amplification": kappa[name], "score_min": float(scores[name].score.min())}
        for name in methods
    }
    flags = verdicts(figures, kappa_fbp, Thresholds(2.0, 0.5, 0.5))
    assert flags["cgls"]["tiny_perturbation"] is True, (kappa, kappa_fbp)
    assert flags["blur"]["structural_change"] is True, figures
    assert flags["hann"]["tiny_perturbation"] is False, (kappa, kappa_fbp)
    assert flags["hann"]["structural_change"] is False, figures
    assert flags["hann"]["more_samples"] is None


def test_amplification_of_a_linear_map_is_its_norm_times_the_input_output_ratio():
    # f = 3 * identity on sinograms: every perturbation is amplified exactly as much as y
    y = torch.rand(1, 1, 4, 5, generator=torch.Generator().manual_seed(2)) + 0.5

    def f(v):
        return 3.0 * v

    assert abs(float(amplification(f, y, 0.01, _attack)) - 1.0) < 1e-4
