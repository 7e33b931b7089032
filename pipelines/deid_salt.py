"""The secret salt of de-identification: from a file or the environment, never the config text.

Pseudonyms and remapped UIDs are salted hashes; whoever knows the salt can recompute them from
the originals, so the salt is a secret the user keeps outside the config. Without one, a
random salt is drawn once per run folder and kept in ``cache/deid/`` (which holds the source
identifiers anyway and never leaves the machine), so a resumed run keeps its pseudonyms while
another run's differ. Only a fingerprint of the salt is ever written elsewhere.
"""

from __future__ import annotations

import hashlib
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

from ctrobust.config import ConfigError, DeidentifyConfig
from dicom_io.atomic import write_text_atomic


@dataclass(frozen=True)
class Salt:
    """The salt, where it came from, and the fingerprint that may be recorded."""

    value: str
    source: str

    @property
    def fingerprint(self) -> str:
        return (
            "sha256:" + hashlib.sha256(("ctrobust-salt\x1f" + self.value).encode()).hexdigest()[:12]
        )


def resolve_salt(cfg: DeidentifyConfig, run_dir: Path, log: logging.Logger) -> Salt:
    """The configured secret, or this run folder's random salt (drawn on first use)."""
    if cfg.salt_file is not None:
        try:
            value = Path(cfg.salt_file).read_text().strip()
        except OSError as error:
            raise ConfigError(
                f"export.deidentify.salt_file: cannot read '{cfg.salt_file}': {error.strerror}"
            ) from None
        if not value:
            raise ConfigError(f"export.deidentify.salt_file: '{cfg.salt_file}' is empty")
        return Salt(value, f"file {cfg.salt_file}")
    if os.environ.get(cfg.salt_env):
        return Salt(os.environ[cfg.salt_env], f"environment variable {cfg.salt_env}")
    kept = run_dir / "cache" / "deid" / "salt"
    if not kept.exists():  # warned once, when drawn, not by every stage that reads it
        write_text_atomic(kept, secrets.token_hex(32))
        log.warning(
            "de-identification: no secret salt (export.deidentify.salt_file or $%s); this run "
            "uses a random salt, so its pseudonyms differ from any other run's",
            cfg.salt_env,
        )
    return Salt(kept.read_text().strip(), "random, this run folder only")
