"""Every user error and failure is one line on stderr with exit 2 (user) or 1 (failure)."""

from __future__ import annotations

import errno
import pickle
from pathlib import Path

import pytest
import torch

import pipelines.cli as cli
from ctrobust.runfiles import RefusedFileError, load_tensors, save_tensors
from pipelines.errors import EXIT_FAILURE, EXIT_USER_ERROR, explain


def _run(argv: list[str], capsys) -> tuple[int, str]:
    code = cli.main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    return code, err


def test_out_that_is_a_file(tmp_path: Path, tiny_config: Path, capsys):
    target = tmp_path / "taken.txt"
    target.write_text("x")
    code, err = _run(["run", str(tiny_config), "--out", str(target)], capsys)
    assert code == EXIT_USER_ERROR and "is a file" in err


def test_config_that_is_a_folder(tmp_path: Path, capsys):
    code, err = _run(["run", str(tmp_path)], capsys)
    assert code == EXIT_USER_ERROR and "is a folder" in err


def test_invalid_yaml_value_in_set_names_the_key(tiny_config: Path, capsys):
    code, err = _run(["run", str(tiny_config), "--set", "attack.eps=[0.01, 0.02"], capsys)
    assert code == EXIT_USER_ERROR and "attack.eps" in err


def test_a_key_given_twice_is_refused(tmp_path: Path, capsys):
    path = tmp_path / "twice.yaml"
    path.write_text("seed: 1\nphysics:\n  views: 10\n  views: 20\n")
    code, err = _run(["run", str(path)], capsys)
    assert code == EXIT_USER_ERROR and "'views' appears twice (line 4)" in err


def test_disk_full_names_the_file_and_says_a_rerun_resumes(tmp_path: Path, capsys, monkeypatch):
    def full(args):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "run.json"))

    monkeypatch.setattr(cli, "cmd_report", full)
    (tmp_path / "metrics.json").write_text("{}")
    code, err = _run(["report", str(tmp_path)], capsys)
    assert code == EXIT_FAILURE
    assert "disk full while writing" in err and "run.json" in err and "resume" in err


def test_torch_write_failure_becomes_a_disk_error_naming_the_file(tmp_path: Path, monkeypatch):
    def failing_save(obj, fh):
        raise RuntimeError("[enforce fail at inline_container.cc:664] . unexpected pos 64")

    monkeypatch.setattr(torch, "save", failing_save)
    with pytest.raises(OSError) as caught:
        save_tensors(tmp_path / "results.pt", {"x": torch.zeros(1)})
    assert caught.value.errno == errno.ENOSPC and caught.value.filename.endswith("results.pt")
    assert list(tmp_path.iterdir()) == [], "no temporary file is left behind"


def test_a_tampered_file_is_refused_without_the_weights_only_false_advice(tmp_path: Path):
    path = tmp_path / "checkpoint.pt"
    torch.save({"net": torch.zeros(1), "payload": _Payload()}, path)
    with pytest.raises(RefusedFileError) as caught:
        load_tensors(path)
    message = str(caught.value)
    assert str(path) in message and "weights_only=False" not in message
    assert "\n" not in message


class _Payload:
    """An arbitrary pickled object, as a tampered checkpoint would carry."""


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (PermissionError(errno.EACCES, "Permission denied", "/runs/x/run.json"), EXIT_USER_ERROR),
        (IsADirectoryError(errno.EISDIR, "Is a directory", "/runs/x/report"), EXIT_USER_ERROR),
        (FileExistsError(errno.EEXIST, "File exists", "/runs/x"), EXIT_USER_ERROR),
        (OSError(errno.EDQUOT, "Disk quota exceeded", "/runs/x/a.pt"), EXIT_FAILURE),
        (OSError(errno.EIO, "Input/output error", "/runs/x/a.pt"), EXIT_FAILURE),
        (
            pickle.UnpicklingError("Weights only load failed.\nRe-running with weights_only=False"),
            2,
        ),
    ],
)
def test_os_errors_are_one_line_with_the_right_exit_code(error: BaseException, code: int):
    message, exit_code = explain(error)
    assert exit_code == code
    assert "\n" not in message
    assert "weights_only=False" not in message
    if isinstance(error, OSError) and error.errno not in (errno.EDQUOT,):
        assert error.filename in message


def test_a_bug_is_not_hidden():
    assert explain(KeyError("x")) is None
