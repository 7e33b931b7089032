"""The shipped configs: ``ctrobust config list|show`` and ``ctrobust run NAME``."""

from __future__ import annotations

from pathlib import Path

import pytest

from ctrobust.config import ConfigError, load_config
from pipelines.cli import main
from pipelines.config_cli import resolve_config_path, shipped_configs

REPO = Path(__file__).resolve().parents[1]
CONFIG_FILES = sorted(REPO.glob("configs/*.yaml"))


def test_every_config_of_the_repo_ships() -> None:
    assert list(shipped_configs()) == [p.stem for p in CONFIG_FILES]


def test_config_list_names_and_describes_each(capsys: pytest.CaptureFixture) -> None:
    assert main(["config", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == [p.stem for p in CONFIG_FILES]
    demo = next(line for line in lines if line.startswith("demo "))
    assert "synthetic patients" in demo


def test_config_show_prints_the_file(capsys: pytest.CaptureFixture) -> None:
    assert main(["config", "show", "demo"]) == 0
    assert capsys.readouterr().out == (REPO / "configs" / "demo.yaml").read_text()


def test_config_show_unknown_is_a_one_line_error(capsys: pytest.CaptureFixture) -> None:
    assert main(["config", "show", "nosuch"]) == 2
    assert "no shipped config 'nosuch'" in capsys.readouterr().err


def test_a_bare_name_is_the_shipped_config_and_a_path_a_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert load_config(resolve_config_path("demo")).name == "demo"
    (tmp_path / "demo.yaml").write_text("name: local\n")
    assert load_config(resolve_config_path("demo.yaml")).name == "local"
    (tmp_path / "demo").write_text("name: file_named_demo\n")
    assert load_config(resolve_config_path("demo")).name == "file_named_demo"
    with pytest.raises(ConfigError, match="neither a file nor a shipped config"):
        resolve_config_path("nosuch")
    with pytest.raises(ConfigError, match="'sub/x.yaml' not found"):
        resolve_config_path("sub/x.yaml")
