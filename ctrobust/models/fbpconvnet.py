"""FBPConvNet (Jin et al. 2017): a U-Net with a global residual on top of FBP.

f(y) = N(R y) with R the FBP of the operator and N(x0) = x0 + U(x0). The U-Net
is MONAI's; depth and widths come from the config (paper: 64..1024 channels).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

import torch
from monai.networks.nets import UNet
from torch import nn


class ReconstructionOperator(Protocol):
    """What FBPConvNet needs from the physics: a differentiable FBP."""

    def fbp(self, y: torch.Tensor) -> torch.Tensor: ...


class ResidualUNet(nn.Module):
    """Image-domain part N of FBPConvNet: x0 + head(U(x0)) (the global skip of Jin et al.).

    ``head`` is a 1x1 convolution initialised to zero, so an untrained network is
    exactly FBP and training only has to learn the correction; a randomly
    initialised residual would first have to unlearn an O(1) random image.
    """

    def __init__(self, unet: nn.Module, features: int) -> None:
        super().__init__()
        self.unet = unet
        self.head = nn.Conv2d(features, 1, kernel_size=1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x0: torch.Tensor) -> torch.Tensor:
        return x0 + self.head(self.unet(x0))


def build_residual_unet(
    channels: Sequence[int] = (16, 32, 64, 128),
    strides: Sequence[int] | None = None,
    num_res_units: int = 1,
    dropout: float = 0.0,
) -> ResidualUNet:
    """MONAI U-Net with a global residual; ``strides`` default to 2 between levels."""
    if len(channels) < 2:
        raise ValueError(f"model.channels needs at least two levels, got {list(channels)}")
    strides = tuple(strides) if strides is not None else (2,) * (len(channels) - 1)
    unet = UNet(
        spatial_dims=2,
        in_channels=1,
        out_channels=channels[0],
        channels=tuple(channels),
        strides=strides,
        num_res_units=num_res_units,
        norm="batch",
        dropout=dropout,
    )
    return ResidualUNet(unet, features=channels[0])


class FBPConvNet(nn.Module):
    """Sinogram -> image reconstructor f(y) = N(R y), differentiable end to end.

    The FBP is fixed (no weights); gradients with respect to y flow through
    ``operator.fbp``, whose backward is H A. Training on cached FBP images uses
    ``self.image_net`` directly, which is the same network.
    """

    def __init__(self, operator: ReconstructionOperator, image_net: ResidualUNet) -> None:
        super().__init__()
        self.operator = operator
        self.image_net = image_net

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.image_net(self.operator.fbp(y))
