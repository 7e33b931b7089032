"""Raj et al. Sec. 3 / 4.5: the robust linear inverse, closed form against trained B^."""

from ctrobust.linear_theory.closed_form import robust_inverse, water_filling
from ctrobust.linear_theory.metrics import paper_metrics, per_direction
from ctrobust.linear_theory.problem import LinearProblem, make_problem
from ctrobust.linear_theory.run import run_linear_theory
from ctrobust.linear_theory.training import train_robust_inverse

__all__ = [
    "LinearProblem",
    "make_problem",
    "paper_metrics",
    "per_direction",
    "robust_inverse",
    "run_linear_theory",
    "train_robust_inverse",
    "water_filling",
]
