"""How close the configured PGA gets to the exact worst case of FBP on a finished run's slices.

Reads the simulated slices of a run folder (its ``simulate`` stage), takes the attacked test
slices and the ball centre the attack stage uses, computes the exact certificate of FBP
(``ctrobust.attacks.certificate``) at every eps of the config, then runs PGA with the config's
attack settings exactly as the stage binds them, and prints per eps: the certified worst case
(attained and upper bound), PGA's mean and lowest-slice share of it, and the steps PGA took.
With ``--network`` the run's trained network of that scheme is attacked from the cold and from
the Jacobian start instead (no certificate: it is not linear).

    .venv/bin/python benchmarks/certify_pga.py runs/demo [--config configs/demo.yaml]
        [--set attack.n_iter=40 --set attack.rel_tol=null] [--network plain]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from ctrobust.attacks.certificate import linear_certificate, top_spectrum
from ctrobust.config import load_config
from ctrobust.reconstructors import FBP, trained_network
from ctrobust.runfiles import load_tensors
from ctrobust.simulation import SimulatedSlices
from pipelines.builders import configured_pga, image_network, measurement_operator


def _slices(run: Path, cfg) -> tuple[torch.Tensor, torch.Tensor]:
    state = load_tensors(run / "cache" / "simulate" / "data.pt")
    test = SimulatedSlices.from_dict(state["slices"]).subset(
        state["split"]["test"][: cfg.attack.max_slices]
    )
    centre = test.y_clean if cfg.attack.center == "nominal" else test.y
    return centre, test.x_gt


def _fbp(cfg, centre: torch.Tensor, x: torch.Tensor, device: torch.device) -> None:
    f = FBP(measurement_operator(cfg, device))
    start = time.perf_counter()
    spectrum = top_spectrum(f, centre[:1], k=cfg.attack.certificate_rank)
    certs = linear_certificate(f, centre, x, cfg.attack.eps, spectrum, relative=cfg.attack.relative)
    print(f"certificate: {time.perf_counter() - start:.1f} s, sigma_max {spectrum.sigma_max:.6f}")
    print("eps     attained   upper      PGA mean   PGA/upper mean  lowest   steps (mean, max)  s")
    for eps, cert in zip(cfg.attack.eps, certs, strict=True):
        start = time.perf_counter()
        pga = configured_pga(cfg, device, eps)(f, centre, x)
        ratio = pga.error / cert.upper
        steps = pga.iterations.double()
        print(
            f"{eps:<7g} {cert.lower.mean():<10.5f} {cert.upper.mean():<10.5f} "
            f"{pga.error.mean():<10.5f} {pga.error.mean() / cert.upper.mean():<15.5f} "
            f"{ratio.min():<8.5f} {steps.mean():.0f}, {steps.max():.0f}"
            f"{'':12}{time.perf_counter() - start:.1f}"
        )


def _network(cfg, run: Path, scheme: str, centre, x, device: torch.device) -> None:
    weights = run / "cache" / "train" / f"{scheme}.pt"
    net = image_network(cfg)
    net.load_state_dict(load_tensors(weights))
    f = trained_network(measurement_operator(cfg, device), net.eval(), scheme, "plain", weights)
    f.eval()
    print("eps     cold rho-hat  steps   s      jacobian rho-hat  steps   s      jacobian wins")
    for eps in cfg.attack.eps:
        row = []
        results = []
        for jacobian in (False, True):
            start = time.perf_counter()
            pga = configured_pga(cfg, device, eps, jacobian=jacobian)(f, centre, x)
            results.append(pga.error)
            row.append(
                f"{pga.error.mean():<13.5f} {pga.iterations.double().mean():<7.0f} "
                f"{time.perf_counter() - start:<6.1f}"
            )
        wins = int((results[1] > results[0]).sum())
        print(f"{eps:<7g} {row[0]} {row[1]}     {wins} of {len(x)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a run folder whose simulate stage is done")
    parser.add_argument("--config", type=Path, default=Path("configs/demo.yaml"))
    parser.add_argument("--set", action="append", default=[], metavar="KEY.PATH=VALUE")
    parser.add_argument("--network", metavar="SCHEME", help="attack this trained network")
    args = parser.parse_args()
    cfg = load_config(args.config, args.set)
    device = torch.device("cpu")
    centre, x = _slices(args.run, cfg)
    if args.network:
        _network(cfg, args.run, args.network, centre, x, device)
    else:
        _fbp(cfg, centre, x, device)


if __name__ == "__main__":
    main()
