"""Perturbation generators G(y) for the adversarial G/f min-max of Raj et al. (eq. 6).

``PerturbationGenerator`` is the paper's G: fully connected layers with ReLU on the
flattened measurement, output reshaped to the measurement's shape (6 layers for CT).
``SharedPerturbation`` is the degenerate G that ignores y and returns one learnable
vector for every sample: the common delta of the paper's eq. (11) / Sec. 4.5, so the
same engine also trains the shared-delta objective whose optimum Theorem 1 gives.

Both start with small outputs (``init_scale``) so that the first adversarial steps see
f near its clean operating point, and both take a ``torch.Generator`` for their
initialisation (no global random state).

``max_norm`` (optional) projects each output onto the ball of that radius (times ||y_i||
with ``relative=True``): delta <- delta * min(1, r / ||delta||). Such a G satisfies the
constraint ||G(y)|| <= eps of eq. (11) exactly, so the hinge of eq. (6) stays inactive,
and gradient ascent through the projection moves delta along the sphere only (no
chatter across the hinge's kink). Without it, G is the paper's unconstrained network.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn


def project_to_ball(
    delta: torch.Tensor, y: torch.Tensor, max_norm: float | None, relative: bool
) -> torch.Tensor:
    """delta_i * min(1, r_i / ||delta_i||), r_i = max_norm (* ||y_i|| if relative)."""
    if max_norm is None:
        return delta
    radius = max_norm * (y.flatten(1).norm(dim=1) if relative else y.new_ones(y.shape[0]))
    norms = delta.flatten(1).norm(dim=1).clamp_min(torch.finfo(delta.dtype).tiny)
    scale = torch.clamp(radius / norms, max=1.0)
    return delta * scale.view(-1, *([1] * (delta.dim() - 1)))


class PerturbationGenerator(nn.Module):
    """G(y): MLP with ReLU on flattened y, output of y's per-sample shape.

    Args:
        in_shape: shape of one measurement without the batch axis, e.g. ``(1, V, D)``
            for a sinogram or ``(10,)`` for a vector.
        hidden: widths of the hidden layers; ``len(hidden) + 1`` linear layers in all
            (paper, CT: 6 layers, i.e. five hidden widths).
        init_scale: the last layer's weights are drawn as usual and multiplied by this
            factor (bias zero), so initial outputs are about ``init_scale`` times the
            size of the last hidden features.
        max_norm: radius of the ball outputs are projected onto; None = no projection.
        relative: the radius is ``max_norm * ||y_i||``.
        generator: source of the initial weights; None means a CPU generator seeded 0.
    """

    def __init__(
        self,
        in_shape: Sequence[int],
        hidden: Sequence[int] = (256, 256, 256, 256, 256),
        *,
        init_scale: float = 1e-3,
        max_norm: float | None = None,
        relative: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.in_shape = tuple(int(s) for s in in_shape)
        self.max_norm, self.relative = max_norm, relative
        features = math.prod(self.in_shape)
        widths = [features, *[int(h) for h in hidden], features]
        layers: list[nn.Module] = []
        for i, (n_in, n_out) in enumerate(zip(widths[:-1], widths[1:], strict=True)):
            layers.append(nn.Linear(n_in, n_out))
            if i < len(widths) - 2:
                layers.append(nn.ReLU())
        self.net = nn.Sequential(*layers)
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        linears = [m for m in self.net if isinstance(m, nn.Linear)]
        with torch.no_grad():
            for layer in linears:
                nn.init.kaiming_uniform_(layer.weight, nonlinearity="relu", generator=gen)
                layer.bias.zero_()
            linears[-1].weight.mul_(init_scale)

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        if tuple(y.shape[1:]) != self.in_shape:
            raise ValueError(f"expected per-sample shape {self.in_shape}, got {tuple(y.shape[1:])}")
        delta = self.net(y.flatten(1)).view_as(y)
        return project_to_ball(delta, y, self.max_norm, self.relative)


class SharedPerturbation(nn.Module):
    """G(y) = delta for every y: one learnable perturbation shared by all samples.

    Args:
        in_shape: shape of one measurement without the batch axis.
        init_scale: standard deviation of the initial entries (Gaussian, seeded).
        max_norm: radius of the ball the output is projected onto; None = no projection.
        relative: the radius is ``max_norm * ||y_i||``.
        generator: source of the initial values; None means a CPU generator seeded 0.
    """

    def __init__(
        self,
        in_shape: Sequence[int],
        *,
        init_scale: float = 1e-3,
        max_norm: float | None = None,
        relative: bool = False,
        generator: torch.Generator | None = None,
    ) -> None:
        super().__init__()
        self.in_shape = tuple(int(s) for s in in_shape)
        self.max_norm, self.relative = max_norm, relative
        gen = generator if generator is not None else torch.Generator().manual_seed(0)
        self.delta = nn.Parameter(init_scale * torch.randn(self.in_shape, generator=gen))

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        if tuple(y.shape[1:]) != self.in_shape:
            raise ValueError(f"expected per-sample shape {self.in_shape}, got {tuple(y.shape[1:])}")
        delta = self.delta.to(y.dtype).expand_as(y)
        return project_to_ball(delta, y, self.max_norm, self.relative)
