"""How each figure was measured, in the words the captions share.

Every caption states the attack budget (ε relative to ‖y‖₂ and absolute), the PGA settings
from ``metrics["attack"]["settings"]``, the number of views, and the PSNR/SSIM convention
from ``metrics["clean"]["note"]``.
"""

from __future__ import annotations

from ctrobust.results import AttackResult

from .html import fmt
from .rundata import RunData


def eps_axis(attack: AttackResult | None) -> tuple[str, float]:
    """Label and scale of ε as the report prints it: percent of ‖y‖₂ when relative."""
    if attack is None or attack.settings.relative:
        return "ε (% of ‖y‖₂)", 100.0
    return "ε (absolute, sinogram units)", 1.0


def eps_text(data: RunData, eps: float) -> str:
    """One ε as printed: '1%' when relative, else the absolute value."""
    _, scale = eps_axis(data.metrics.attack)
    return f"{fmt(eps * scale, 3)}%" if scale == 100.0 else fmt(eps, 3)


def eps_abs_text(data: RunData, t: int) -> str:
    """Absolute ‖δ‖₂ budget per ε on the t-th attacked slice, from the attack cache."""
    attack = data.attack or {}
    for m in attack.get("models", {}).values():
        eps_abs = m.get("eps_abs")
        if eps_abs is not None and t < eps_abs.shape[1]:
            pairs = [
                f"{eps_text(data, e)} → {fmt(float(a), 4)}"
                for e, a in zip(attack.get("eps", []), eps_abs[:, t].tolist(), strict=False)
            ]
            return "absolute ‖δ‖₂ on this slice: " + ", ".join(pairs)
    return ""


def psnr_note(data: RunData) -> str:
    """The PSNR/SSIM convention of the run, as a sentence."""
    clean = data.metrics.clean
    return f"PSNR/SSIM {clean.note.rstrip('.')}." if clean else ""


def attack_caption(data: RunData, t: int | None = None, full: bool = False) -> str:
    """The sinogram attack's settings; ``t`` adds the slice's absolute budgets, ``full`` the
    random control and the attack stage's own note."""
    attack = data.metrics.attack
    if attack is None:
        return ""
    s = attack.settings
    views = data.metrics.data.views if data.metrics.data else None
    centre = (
        "centred on the noise-free measurement A x₀ (Raj et al. eq. 7)"
        if s.center == "nominal"
        else "centred on the noisy measured sinogram y"
    )
    stop = f"at most {fmt(s.n_iter)} iterations" + (
        f", a slice stops when its best error grew < {fmt(s.rel_tol)} in {s.patience}"
        if s.rel_tol is not None
        else ""
    )
    text = (
        f"Attack: worst-case δ by projected gradient ascent on ‖δ‖₂ ≤ ε, {centre} "
        f"({stop}, step {fmt(s.step)}, momentum "
        f"{fmt(s.momentum)}, {fmt(s.restarts)} restarts, {s.start} start), "
        + ("ε relative to the ℓ2 norm of that centre" if s.relative else "ε absolute")
    )
    if attack.noise_relative_mean is not None:
        noise = fmt(100 * attack.noise_relative_mean, 3)
        text += (
            f"; the simulated scanner noise ‖y − A x₀‖ is {noise} % of ‖A x₀‖ on average, and "
            "the 'ε / noise norm' column compares each budget with it"
        )
    budgets = eps_abs_text(data, t) if t is not None else ""
    text += f" ({budgets})" if budgets else ""
    if views:
        text += f"; {views}-view measurements"
    text += "."
    if full:
        text += f" Random control: {fmt(s.random_draws)} random δ of the same norm."
        text += f" {attack.note.rstrip('.')}."
    return text
