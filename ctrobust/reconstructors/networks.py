"""FBPConvNets as reconstructors: f(y) = N(R y) with the image network N trained by ctrobust."""

from __future__ import annotations

from pathlib import Path

from torch import Tensor, nn

from .base import MethodId, MethodKind, Provenance, Reconstructor, sha256_of


class NetworkOnFBP(Reconstructor):
    """An image network applied to the FBP of the measured views (FBPConvNet, Jin et al.).

    Gradients with respect to y flow through the network and through ``operator.fbp`` (whose
    backward is H A). At another view count the same network sees that count's FBP, which is
    how Antun et al.'s more-samples test feeds a network trained at 143 views.
    """

    def __init__(
        self,
        operator,
        image_net: nn.Module,
        method: MethodId,
        label: str,
        provenance: Provenance,
    ) -> None:
        super().__init__(method, label, operator, provenance)
        self.image_net = image_net

    def forward(self, y: Tensor) -> Tensor:
        return self.image_net(self.operator.fbp(y))

    def for_operator(self, operator) -> NetworkOnFBP:
        return NetworkOnFBP(operator, self.image_net, self.method, self.label, self.provenance)


def trained_network(
    operator, image_net: nn.Module, scheme: str, training: str, weights: Path
) -> NetworkOnFBP:
    """A FBPConvNet trained by ctrobust under ``scheme`` (its config name) and ``training`` kind."""
    kind = training.replace("_", " ")
    return NetworkOnFBP(
        operator,
        image_net,
        MethodId(MethodKind.NETWORK, scheme),
        f"{scheme} (network, {kind} training)",
        Provenance(
            f"FBPConvNet (MONAI U-Net on FBP) trained by ctrobust, {kind} scheme",
            weights=str(weights),
            sha256=sha256_of(weights),
        ),
    )
