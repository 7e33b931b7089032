"""The reconstructor f and the generator G of Raj et al. Sec. 4 for compressive sensing.

f(y) = CNN(A^T y): the measurement is taken back to the image by the adjoint (the paper's
pre-processing), then ``conv_layers`` 3x3 convolutions (every second one of the first
downsamples by 2) and ``transposed_layers`` transposed convolutions (the first ones upsample
by 2 as often) bring it back to the image, ReLU between layers, no activation at the end.
Small size: 4 + 3 layers (28 -> 7 -> 28), large: 6 + 4 (64 -> 8 -> 64). There is no batch
normalisation, so f treats every sample alone in train and eval mode alike and the attack's
per-sample losses stay independent.

G is :class:`ctrobust.models.generator.PerturbationGenerator`, fully connected on y.
Weights are drawn from a seeded generator (no global random state), so every scheme of a run
starts from the same f.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from ctrobust.cs.operators import MatrixOperator, apply_adjoint
from ctrobust.models.generator import PerturbationGenerator


def _downsamplings(conv_layers: int, transposed_layers: int, side: int) -> int:
    down = min(conv_layers // 2, transposed_layers - 1)
    if side % 2**down:
        raise ValueError(f"a {side} x {side} image cannot be halved {down} times")
    return down


class CSReconstructor(nn.Module):
    """f(y) = CNN(A^T y) for measurements y (B, m) of ``op``; A is a (non-trained) buffer."""

    def __init__(
        self,
        op: MatrixOperator,
        *,
        conv_layers: int,
        transposed_layers: int,
        width: int,
        generator: torch.Generator,
    ) -> None:
        super().__init__()
        if conv_layers < 1 or transposed_layers < 1:
            raise ValueError("needs at least one convolution and one transposed convolution")
        self.side = op.side
        self.register_buffer("matrix", op.tensor())
        down = _downsamplings(conv_layers, transposed_layers, op.side)
        layers: list[nn.Module] = []
        channels = 1
        for i in range(conv_layers):
            stride = 2 if i % 2 == 1 and i // 2 < down else 1
            layers += [nn.Conv2d(channels, width, 3, stride=stride, padding=1), nn.ReLU()]
            channels = width
        for i in range(transposed_layers):
            last = i == transposed_layers - 1
            out = 1 if last else width
            if i < down:
                layers.append(nn.ConvTranspose2d(width, out, 4, stride=2, padding=1))
            else:
                layers.append(nn.ConvTranspose2d(width, out, 3, stride=1, padding=1))
            if not last:
                layers.append(nn.ReLU())
        self.body = nn.Sequential(*layers)
        with torch.no_grad():
            for layer in self.body:
                if isinstance(layer, nn.Conv2d | nn.ConvTranspose2d):
                    nn.init.kaiming_uniform_(layer.weight, nonlinearity="relu", generator=generator)
                    layer.bias.zero_()

    def forward(self, y: Tensor) -> Tensor:
        return self.body(apply_adjoint(self.matrix, y, self.side))


def cs_generator(
    m: int, layers: int, width: int, seed: int, max_norm: float | None = None
) -> PerturbationGenerator:
    """The paper's G on y in R^m: ``layers`` fully connected layers with ReLU between, its
    output projected onto the ball of radius ``max_norm`` (None: unconstrained)."""
    return PerturbationGenerator(
        (m,),
        hidden=(width,) * (layers - 1),
        max_norm=max_norm,
        generator=torch.Generator().manual_seed(seed),
    )
