"""Controls for Antun et al.'s tests: reconstructors whose (in)stability is known in advance.

A test whose sensitivity is never shown proves little (a clean verdict cannot be told from a
blind test). So every test also runs

- **CGLS far past semi-convergence** (positive control, tiny perturbation): conjugate
  gradients on the unregularised least-squares problem min ||A x - y||; each iteration
  reaches further into A's small singular values, so worst-case perturbations are amplified
  by up to 1 / sigma_min(A) (Hansen, *Discrete Inverse Problems*, ch. 6);
- **blurred FBP** (positive control, structural change): FBP followed by a Gaussian blur of
  a few mm, which erases details smaller than the blur whatever the data;
- **Hann FBP** (negative control): FBP with a smooth filter window, linear and stable: it
  damps the highest frequencies, so it amplifies perturbations less than ram-lak FBP and
  keeps details of a few pixels.

Each test's verdict is a threshold on one figure (:func:`verdicts`): the worst-case relative
amplification of a tiny measurement perturbation (:func:`amplification`), the lowest detail
recovery score, and the largest PSNR drop as views are added.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ctrobust.reconstructors.base import MethodId, MethodKind, Provenance, Reconstructor


def _dot(a: Tensor, b: Tensor) -> Tensor:
    return (a * b).flatten(1).sum(dim=1).view(-1, 1, 1, 1)


def cgls(op, y: Tensor, n_iter: int) -> Tensor:
    """``n_iter`` CGLS iterations for min ||A x - y|| from x = 0, per sample; differentiable.

    A sample whose normal-equation residual vanishes keeps its iterate (no division by 0).
    """
    x = torch.zeros(y.shape[0], 1, op.n, op.n, dtype=y.dtype, device=y.device)
    r = y
    s = op.A_adjoint(r)
    p, gamma = s, _dot(s, s)
    tiny = torch.finfo(y.dtype).tiny
    for _ in range(n_iter):
        q = op.A(p)
        qq = _dot(q, q)
        alpha = torch.where(qq > tiny, gamma / qq.clamp_min(tiny), torch.zeros_like(qq))
        x = x + alpha * p
        r = r - alpha * q
        s = op.A_adjoint(r)
        gamma_new = _dot(s, s)
        beta = torch.where(gamma > tiny, gamma_new / gamma.clamp_min(tiny), torch.zeros_like(gamma))
        p, gamma = s + beta * p, gamma_new
    return x


class CGLSControl(Reconstructor):
    """Positive control: unregularised least squares by CGLS run far past semi-convergence."""

    def __init__(self, operator, *, n_iter: int) -> None:
        super().__init__(
            MethodId(MethodKind.CONTROL, "control_cgls"),
            f"CGLS ×{n_iter} (positive control)",
            operator,
            Provenance(f"unregularised least squares, {n_iter} CGLS iterations from zero"),
        )
        self.n_iter = n_iter

    def forward(self, y: Tensor) -> Tensor:
        return cgls(self.operator, y, self.n_iter)

    def for_operator(self, operator) -> CGLSControl:
        return CGLSControl(operator, n_iter=self.n_iter)


def gaussian_blur(x: Tensor, sigma_px: float) -> Tensor:
    """Separable Gaussian blur of (B, 1, N, N) images, reflect-padded, kernel to 3 sigma."""
    radius = max(1, math.ceil(3.0 * sigma_px))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma_px) ** 2)
    k = k / k.sum()
    x = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1))
    return F.conv2d(x, k.view(1, 1, -1, 1))


class BlurredFBPControl(Reconstructor):
    """Positive control for the structural test: FBP, then a Gaussian blur of ``sigma_px``."""

    def __init__(self, operator, *, sigma_px: float) -> None:
        super().__init__(
            MethodId(MethodKind.CONTROL, "control_blur"),
            "blurred FBP (positive control)",
            operator,
            Provenance(f"FBP followed by a Gaussian blur of sigma {sigma_px:.3g} px"),
        )
        self.sigma_px = float(sigma_px)

    def forward(self, y: Tensor) -> Tensor:
        return gaussian_blur(self.operator.fbp(y), self.sigma_px)

    def for_operator(self, operator) -> BlurredFBPControl:
        return BlurredFBPControl(operator, sigma_px=self.sigma_px)


class HannFBPControl(Reconstructor):
    """Negative control: FBP with the Hann window on the geometry of ``operator``."""

    def __init__(self, operator) -> None:
        super().__init__(
            MethodId(MethodKind.CONTROL, "control_fbp_hann"),
            "Hann FBP (negative control)",
            operator,
            Provenance("filtered back-projection, Hann window"),
        )
        self.hann = operator if operator.window == "hann" else operator.with_window("hann")

    def forward(self, y: Tensor) -> Tensor:
        return self.hann.fbp(y)

    def for_operator(self, operator) -> HannFBPControl:
        return HannFBPControl(operator)


def amplification(
    f: Callable[[Tensor], Tensor],
    y: Tensor,
    eps: float,
    attack: Callable[..., object],
) -> Tensor:
    """Worst-case relative amplification of a tiny measurement perturbation, per slice:

        kappa = (||f(y + e) - f(y)|| / ||f(y)||) / (||e|| / ||y||),   ||e|| <= eps ||y||,

    with e found by ``attack(f, y, target, eps=..., relative=True)`` (a PGA) aimed at the
    clean output, so it maximises the change of the output, as Antun's test asks. For a
    linear f and a converged attack, kappa = ||f||_2 ||y|| / ||f(y)||.
    """
    with torch.no_grad():
        clean = f(y)
    result = attack(f, y, clean, eps=eps)
    with torch.no_grad():
        change = (f(y + result.delta) - clean).flatten(1).norm(dim=1)
    rel_out = change / clean.flatten(1).norm(dim=1).clamp_min(torch.finfo(y.dtype).tiny)
    rel_in = result.delta.flatten(1).norm(dim=1) / y.flatten(1).norm(dim=1)
    return rel_out / rel_in.clamp_min(torch.finfo(y.dtype).tiny)


@dataclass(frozen=True)
class Thresholds:
    """When each of Antun's tests flags a method (see :class:`ctrobust.config.ControlsConfig`)."""

    amplification_factor: float
    score_min: float
    drop_max_db: float


def verdicts(
    figures: dict[str, dict[str, float | None]], fbp_amplification: float, limits: Thresholds
) -> dict[str, dict[str, bool | None]]:
    """Flag per method and test: ``True`` = unstable, ``False`` = passes, ``None`` = not run.

    ``figures[name]`` holds ``amplification`` (kappa), ``score_min`` (lowest detail recovery
    score) and ``drop_db`` (largest PSNR drop as views are added), each possibly None.
    """
    kappa_max = limits.amplification_factor * fbp_amplification

    def flag(value: float | None, bad: Callable[[float], bool]) -> bool | None:
        return None if value is None else bool(bad(value))

    return {
        name: {
            "tiny_perturbation": flag(fig.get("amplification"), lambda v: v > kappa_max),
            "structural_change": flag(fig.get("score_min"), lambda v: v < limits.score_min),
            "more_samples": flag(fig.get("drop_db"), lambda v: v > limits.drop_max_db),
        }
        for name, fig in figures.items()
    }
