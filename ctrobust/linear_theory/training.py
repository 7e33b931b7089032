"""Train B^ (f = B, linear in y) with the same adversarial engine as the CT reconstructor.

Why a preconditioner. The clean and adversarial terms give the direction U_i of y a
curvature of about (1 + lam) S_i^2 in B, so with S_i = 1e-4 plain gradient steps move
B U_i by ~lr * 2 (1 + lam) S_i per step and need ~1/(lr S_i) steps to reach the water
level (measured in docs/linear_theory.md). ``precondition="tikhonov"`` trains the same
linear map in other coordinates: f(y) = B' P y with the fixed, data-derived

    P = (C_y + c I)^(-1/2),   C_y = (1/N) sum y y^T,   c = lam / (1 + lam) eps^2,

so B = B' P. (1 + lam) C_y + lam eps^2 I is the curvature of the objective in the
directions the adversary acts on, and in B' coordinates it is (1 + lam) I there: every
direction converges at a similar rate while the adversarial term stays bounded (a full
whitening, c = 0, would blow the adversarial curvature of U_i up by 1/S_i^2). Optimum
and objective are unchanged; only the gradient geometry differs.

The generator is either the paper's MLP on y (per-sample perturbations) or a single
shared learnable delta (the paper's eq. 11), optionally projected onto the eps-ball. f's
learning rate follows a cosine decay over the adversarial epochs (G's stays constant, so
that G keeps tracking f as f settles); B^ is the last iterate.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import torch
from ignite.engine import Engine, Events
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from ctrobust.config import LinearTrainingConfig
from ctrobust.linear_theory.problem import LinearProblem
from ctrobust.models.generator import PerturbationGenerator, SharedPerturbation
from ctrobust.training.adversarial import attach_epoch_means, create_adversarial_trainer


class PreconditionedLinear(nn.Module):
    """f(y) = B' (P y) with a fixed symmetric P; the linear map is ``matrix()`` = B' P."""

    def __init__(self, n_out: int, preconditioner: torch.Tensor) -> None:
        super().__init__()
        self.register_buffer("preconditioner", preconditioner.clone())
        self.weight = nn.Parameter(
            torch.zeros(n_out, preconditioner.shape[0], dtype=preconditioner.dtype)
        )

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return y @ (self.weight @ self.preconditioner).T

    def matrix(self) -> torch.Tensor:
        """B = B' P, the matrix the module applies to y."""
        return (self.weight @ self.preconditioner).detach()


def tikhonov_preconditioner(y: torch.Tensor, c: float) -> torch.Tensor:
    """(C_y + c I)^(-1/2) with C_y the second moment of the rows of y."""
    second = y.T @ y / y.shape[0]
    evals, evecs = torch.linalg.eigh(second + c * torch.eye(y.shape[1], dtype=y.dtype))
    return (evecs / evals.sqrt()) @ evecs.T


@dataclass
class TrainedInverse:
    """B^ and the per-epoch history (engine means and the diagonal of V^T B U)."""

    B_hat: np.ndarray
    history: list[dict[str, float]] = field(default_factory=list)
    q_history: list[list[float]] = field(default_factory=list)


def _generator(problem: LinearProblem, s: LinearTrainingConfig, eps: float, seed: int) -> nn.Module:
    gen = torch.Generator().manual_seed(seed + 1)
    radius = eps if s.project else None
    if s.generator == "shared":
        G: nn.Module = SharedPerturbation((problem.m,), max_norm=radius, generator=gen)
    else:
        G = PerturbationGenerator((problem.m,), s.g_hidden, max_norm=radius, generator=gen)
    return G.double()


def _flatten_groups(
    batch: Sequence[torch.Tensor], device: torch.device, non_blocking: bool
) -> tuple[torch.Tensor, torch.Tensor]:
    """(b, group, d) -> (b * group, d), pair members adjacent so K parts keep them whole."""
    y, x = batch[0], batch[1]
    return (
        y.flatten(0, 1).to(device, non_blocking=non_blocking),
        x.flatten(0, 1).to(device, non_blocking=non_blocking),
    )


def train_robust_inverse(
    problem: LinearProblem,
    settings: LinearTrainingConfig,
    *,
    lam: float = 1.0,
    eps: float = 0.1,
    seed: int = 0,
) -> TrainedInverse:
    """Run the adversarial engine on (y, x) with f = B and return B^ (float64).

    ``lam`` (= lam1) and ``eps`` are the problem's, shared with the closed form; ``seed``
    seeds G's initialisation (seed + 1) and the shuffling (seed).
    """
    s = settings
    y = torch.as_tensor(problem.y, dtype=torch.float64)
    x = torch.as_tensor(problem.x, dtype=torch.float64)
    c = lam / (1 + lam) * eps**2 if s.precondition == "tikhonov" else None
    precond = (
        tikhonov_preconditioner(y, c)
        if c is not None
        else torch.eye(problem.m, dtype=torch.float64)
    )
    f = PreconditionedLinear(problem.n, precond)
    G = _generator(problem, s, eps, seed)
    if s.optimizer == "sgd":
        opt_f: torch.optim.Optimizer = torch.optim.SGD(f.parameters(), lr=s.lr, momentum=s.momentum)
    else:
        opt_f = torch.optim.Adam(f.parameters(), lr=s.lr, betas=(0.5, 0.999))
    if s.g_optimizer == "sgd":
        opt_G: torch.optim.Optimizer = torch.optim.SGD(G.parameters(), lr=s.g_lr)
    else:
        opt_G = torch.optim.Adam(G.parameters(), lr=s.g_lr, betas=(0.5, 0.999))
    engine = create_adversarial_trainer(
        f, G, opt_f, opt_G, eps=eps, lam1=lam, lam2=s.lam2, k_parts=s.k_parts,
        g_steps=s.g_steps, warmup_epochs=s.warmup_epochs, reduction="sum",
        prepare_batch=_flatten_groups,
    )  # fmt: skip
    attach_epoch_means(engine)
    group = 2 if s.keep_pairs else 1  # batches (and their K parts) of whole antithetic pairs
    if s.keep_pairs and (len(y) % 2 or (s.batch_size // s.k_parts) % 2):
        raise ValueError("keep_pairs needs an even sample count and an even part size")
    loader = DataLoader(
        TensorDataset(y.view(-1, group, problem.m), x.view(-1, group, problem.n)),
        batch_size=s.batch_size // group, shuffle=True, drop_last=True,
        generator=torch.Generator().manual_seed(seed),
    )  # fmt: skip
    U = torch.as_tensor(problem.U)
    V = torch.as_tensor(problem.V)
    result = TrainedInverse(B_hat=np.zeros((problem.n, problem.m)))

    @engine.on(Events.EPOCH_COMPLETED)
    def _record(engine: Engine) -> None:
        result.history.append({"epoch": engine.state.epoch, **engine.state.metrics})
        result.q_history.append(torch.diagonal(V.T @ f.matrix() @ U).tolist())

    if s.lr_schedule == "cosine" and s.epochs > s.warmup_epochs:
        total = (s.epochs - s.warmup_epochs) * len(loader)

        @engine.on(Events.ITERATION_STARTED)
        def _cosine(engine: Engine) -> None:
            done = (engine.state.epoch - 1 - s.warmup_epochs) * len(loader) + (
                (engine.state.iteration - 1) % len(loader)
            )
            factor = 0.5 * (1 + np.cos(np.pi * min(max(done, 0), total) / total))
            for group in opt_f.param_groups:
                group["lr"] = s.lr * factor

    with _single_thread():
        engine.run(loader, max_epochs=s.epochs)
    result.B_hat = f.matrix().numpy()
    return result


@contextmanager
def _single_thread() -> Iterator[None]:
    """Run torch on the calling thread only, restoring the thread count afterwards.

    The tensors here are tiny, so worker threads only add overhead, and the engine's
    flush-to-zero of subnormals applies to the calling thread only (measured: an MLP-G epoch
    took 4 s single-threaded against 20-30 s with two threads).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
