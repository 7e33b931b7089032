"""Weight penalties of the baselines in Raj et al.: weight decay (eq. 5) and Parseval (eq. 10).

Parseval (Cisse et al. 2017, Raj et al. eq. 10)::

    beta/2 * ( sum_dense ||W^T W - I||_F^2 + sum_conv ||W_j^T W_j - I / k_j||_F^2 )

* A dense layer's W is ``nn.Linear.weight`` (out, in).
* A convolution's W_j is its weight unfolded to a matrix with one row per
  ``weight.shape[0]`` and ``in * prod(kernel)`` columns: ``weight.reshape(shape[0], -1)``
  (for ``Conv*d`` the rows are output channels, for ``ConvTranspose*d`` input channels;
  a transposed convolution is the adjoint of a convolution with the same tensor, so both
  have the same operator norm). ``k_j`` is the number of kernel taps ``prod(kernel_size)``:
  each input pixel is repeated k_j times in the unfolded input, so W_j^T W_j = I / k_j
  makes the convolution (periodic boundaries, stride 1) a Parseval tight frame, Lipschitz 1.
  Stride is ignored, as in the paper.
* The Gram matrix is taken on the smaller side of W (W^T W if W is tall, W W^T if wide).
  ||W^T W - cI||^2 and ||W W^T - cI||^2 differ by the constant |in - out| c^2 and have the
  same gradient 4 (W W^T - cI) W, so this is the paper's penalty up to a constant, it is
  zero exactly at tight frames, and it is cheaper for wide convolution matrices.

Weight decay (eq. 5) is ``mu * sum ||theta||^2`` over all parameters (explicit, so that it
is added to the loss the same way for every optimiser; Adam's coupled ``weight_decay=w``
is the same gradient with ``w = 2 mu``).
"""

from __future__ import annotations

import math

import torch
from torch import nn

_CONV = (
    nn.Conv1d,
    nn.Conv2d,
    nn.Conv3d,
    nn.ConvTranspose1d,
    nn.ConvTranspose2d,
    nn.ConvTranspose3d,
)


def tight_frame_defect(weight: torch.Tensor, scale: float = 1.0) -> torch.Tensor:
    """||G - scale * I||_F^2 with G the Gram matrix of ``weight`` on its smaller side."""
    matrix = weight.reshape(weight.shape[0], -1)
    gram = matrix @ matrix.T if matrix.shape[0] <= matrix.shape[1] else matrix.T @ matrix
    eye = torch.eye(gram.shape[0], dtype=gram.dtype, device=gram.device)
    return torch.sum((gram - scale * eye) ** 2)


def parseval_penalty(model: nn.Module, beta: float) -> torch.Tensor:
    """beta/2 times the summed tight-frame defects of every Linear and Conv layer (eq. 10)."""
    terms = []
    for module in model.modules():
        if isinstance(module, nn.Linear):
            terms.append(tight_frame_defect(module.weight, 1.0))
        elif isinstance(module, _CONV):
            terms.append(tight_frame_defect(module.weight, 1.0 / math.prod(module.kernel_size)))
    if not terms:
        return _zero(model)
    return 0.5 * beta * torch.stack(terms).sum()


def weight_penalty(model: nn.Module, mu: float) -> torch.Tensor:
    """mu * sum of squared parameters (eq. 5's mu ||theta||^2)."""
    squares = [torch.sum(p**2) for p in model.parameters() if p.requires_grad]
    if not squares:
        return _zero(model)
    return mu * torch.stack(squares).sum()


def _zero(model: nn.Module) -> torch.Tensor:
    first = next(model.parameters(), None)
    return torch.zeros((), device=first.device if first is not None else "cpu")
