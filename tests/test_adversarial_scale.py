"""lam1 and lam2 of the adversarial engine mean the paper's eq. 6 values whatever the reduction."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ctrobust.config import AdversarialScheme
from ctrobust.models.generator import SharedPerturbation
from ctrobust.training.adversarial import create_adversarial_trainer
from ctrobust.training.adversarial_setup import adversarial_f_optimizer

DT = torch.float64
N_PIXELS = 9  # images of 3 x 3


class _ToImage(nn.Module):
    """f(y) = W y reshaped to (B, 1, 3, 3)."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(6, N_PIXELS, bias=False).double()

    def forward(self, y: torch.Tensor) -> torch.Tensor:
        return self.linear(y).reshape(-1, 1, 3, 3)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
def test_logged_terms_are_eq6_by_hand_times_one_constant(reduction):
    gen = torch.Generator().manual_seed(0)
    y = torch.randn(5, 6, generator=gen, dtype=DT)
    x = torch.randn(5, 1, 3, 3, generator=gen, dtype=DT)
    f = _ToImage()
    G = SharedPerturbation((6,), init_scale=1.0, generator=gen).double()
    eps, lam1, lam2 = 0.1, 0.7, -0.3
    frozen = [torch.optim.SGD(m.parameters(), lr=0.0) for m in (f, G)]  # nothing moves
    engine = create_adversarial_trainer(
        f, G, *frozen, eps=eps, lam1=lam1, lam2=lam2, k_parts=1, reduction=reduction
    )
    engine.run([(y, x)], max_epochs=1)
    out = engine.state.output

    with torch.no_grad():  # eq. 6 with the paper's squared l2 norms, batch mean
        delta = G(y)
        clean = ((f(y) - x) ** 2).sum(dim=(1, 2, 3)).mean()
        adv = ((f(y + delta) - x) ** 2).sum(dim=(1, 2, 3)).mean()
        hinge = torch.relu((delta**2).sum(dim=1) - eps**2).mean()
    assert float(hinge) > 1.0  # the hinge is active, so its weight is tested
    scale = 1.0 if reduction == "sum" else 1.0 / N_PIXELS
    assert out["loss_clean"] == pytest.approx(scale * float(clean), rel=1e-12)
    assert out["loss_adv"] == pytest.approx(scale * float(adv), rel=1e-12)
    assert out["loss"] == pytest.approx(scale * float(clean + lam1 * adv), rel=1e-12)
    assert out["g_objective"] == pytest.approx(scale * float(lam1 * adv + lam2 * hinge), rel=1e-12)


def test_adversarial_scheme_uses_the_papers_adam_for_f():
    scheme = AdversarialScheme(name="adv", scheme="adversarial")
    opt = adversarial_f_optimizer(scheme, nn.Linear(2, 2))
    group = opt.param_groups[0]
    assert isinstance(opt, torch.optim.Adam)
    assert group["lr"] == 1e-4 and group["betas"] == (0.5, 0.999)
