"""Config validation: every user error stops before work with one line naming the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from ctrobust.config import (
    AdversarialConfig,
    AdversarialScheme,
    ConfigError,
    LinearTheoryConfig,
    PlainScheme,
    RunConfig,
    check_config_keys,
    load_config,
)
from pipelines.cli import main

CONFIGS = sorted(Path(__file__).resolve().parents[1].glob("configs/*.yaml"))


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_shipped_configs_validate(path: Path) -> None:
    load_config(path)


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "cfg.yaml"
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("text", "key", "expected"),
    [
        ("data:\n  nn: 64\n", "data.nn", "unknown key"),
        ("physics:\n  views: 0\n", "physics.views", "greater than 0"),
        ("physics:\n  views: many\n", "physics.views", "integer"),
        ("attack:\n  eps: [0.01, -0.02]\n", "attack.eps.1", "greater than or equal to 0"),
        ("data:\n  folder: /no/such/folder\n", "data.folder", "does not exist"),
        (
            "train:\n  schemes:\n    - name: a\n      scheme: weight_decay\n",
            "train.schemes.0.weight_decay",
            "Field required",
        ),
        (
            "train:\n  schemes:\n    - name: a\n      weight_decay: 0.1\n",
            "train.schemes.0.weight_decay",
            "unknown key",
        ),
        (
            "train:\n  schemes:\n    - name: a\n      scheme: adversarial\n"
            "      adversarial:\n        lam2: 1\n",
            "train.schemes.0.adversarial.lam2",
            "less than 0",
        ),
        ("train:\n  schemes:\n    - name: a\n      scheme: magic\n", "train.schemes.0", "magic"),
        ("linear_theory:\n  samples: 10\n", "linear_theory.samples", "unknown key"),
        ("linear_theory:\n  eps: -0.1\n", "linear_theory.eps", "greater than 0"),
        (
            "linear_theory:\n  runs:\n    x:\n      generator: cnn\n",
            "linear_theory.runs.x.generator",
            "'shared' or 'mlp'",
        ),
        (
            "linear_theory:\n  training:\n    generatr: mlp\n",
            "linear_theory.training.generatr",
            "unknown key",
        ),
        ("surprise: 1\n", "surprise", "unknown key"),
        ("attack:\n  eps: [0.01, 2.0]\n", "attack", "above 1"),
        ("physics:\n  i0: .inf\n", "physics.i0", "finite"),
        ("physics:\n  views: 143\n  gt_views: 100\n", "physics", "at least views"),
        ("data:\n  test_fraction: 0.6\n  val_fraction: 0.5\n", "data", "below 1"),
        ("train:\n  epochs: true\n", "train.epochs", "valid integer"),
        ("train:\n  epochs: 2.0\n", "train.epochs", "valid integer"),
        ("train:\n  batch_size: 100000000000000000000\n", "train.batch_size", "less than"),
        ("attack:\n  batch_size: 1e20\n", "attack.batch_size", "valid integer"),
        ("device: tpu\n", "device", "cpu, cuda, cuda:N or auto"),
        ("export:\n  deidentify:\n    salt: public\n", "export.deidentify.salt", "unknown key"),
    ],
)
def test_config_errors_name_the_key(tmp_path: Path, text: str, key: str, expected: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(_write(tmp_path, text))
    message = str(info.value)
    assert "\n" not in message
    assert f": {key}: " in message
    assert expected in message


def test_override_sets_nested_value(tmp_path: Path) -> None:
    cfg = load_config(_write(tmp_path, "data:\n  n: 64\n"), ["data.n=32", "physics.i0=1e4"])
    assert cfg.data.n == 32
    assert cfg.physics.i0 == pytest.approx(1e4)


def test_yaml_is_data_not_code(tmp_path: Path) -> None:
    path = _write(tmp_path, "name: !!python/object/apply:os.system ['echo pwned']\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(path)


def test_cli_reports_config_error_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path = _write(tmp_path, "physics:\n  views: -3\n")
    code = main(["run", str(path), "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err.strip()
    assert code == 2
    assert err.count("\n") == 0
    assert "physics.views" in err
    assert "Traceback" not in err
    assert not (tmp_path / "run" / "run.json").exists()


def test_a_grid_the_network_cannot_take_names_data_n(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"data.n = 100 .* multiple of 8, e.g. 96"):
        load_config(_write(tmp_path, "data:\n  n: 100\nmodel:\n  channels: [4, 8, 16, 32]\n"))


def test_schemes_are_told_apart_by_their_scheme_key(tmp_path: Path) -> None:
    text = (
        "train:\n  schemes:\n    - name: p\n    - name: adv\n      scheme: adversarial\n"
        "    - name: wd\n      scheme: weight_decay\n      weight_decay: 1.0e-4\n"
    )
    plain, adv, wd = load_config(_write(tmp_path, text)).train.schemes
    assert isinstance(plain, PlainScheme)
    assert isinstance(adv, AdversarialScheme) and adv.adversarial == AdversarialConfig()
    assert wd.scheme == "weight_decay" and wd.weight_decay == pytest.approx(1e-4)


def test_dumped_config_validates_to_the_same_config() -> None:
    for path in CONFIGS:
        cfg = load_config(path)
        assert RunConfig.model_validate(cfg.model_dump(mode="json")) == cfg


def test_linear_runs_extend_the_shared_training_block(tmp_path: Path) -> None:
    text = (
        "linear_theory:\n  training:\n    epochs: 7\n    lr: 0.01\n"
        "  runs:\n    a:\n      lr: 0.5\n    b:\n      generator: mlp\n"
    )
    section = load_config(_write(tmp_path, text)).linear_theory
    assert section is not None
    assert (section.runs["a"].epochs, section.runs["a"].lr) == (7, 0.5)
    assert (section.runs["b"].epochs, section.runs["b"].lr) == (7, 0.01)
    assert section.runs["b"].generator == "mlp"
    default = LinearTheoryConfig(training={"epochs": 3})
    assert list(default.runs) == ["shared"] and default.runs["shared"].epochs == 3


@pytest.mark.parametrize(
    "path", ["seed", "linear_theory", "linear_theory.training.lr", "train.schemes", "attack.eps"]
)
def test_known_config_keys_pass(path: str) -> None:
    check_config_keys([path])


@pytest.mark.parametrize("path", ["atack", "attack.epss", "seed.x", "linear_theory.lam.x"])
def test_misspelled_config_key_is_named(path: str) -> None:
    with pytest.raises(ConfigError, match=f"'{path}'"):
        check_config_keys([path], reader="stage x")


def test_pipeline_stage_lists_read_existing_keys() -> None:
    from pipelines.ct import ct_stages, linear_stages

    for stage in ct_stages() + linear_stages():
        check_config_keys(stage.config_keys)
