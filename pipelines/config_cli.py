"""The configs that ship with ctrobust: ``ctrobust config list|show`` and bare names for ``run``.

The repository's ``configs/`` folder is installed as the package data ``pipelines.configs``
(setup.py), so ``ctrobust run demo`` works without a checkout. In a checkout that is not
installed (or whose install points elsewhere) the same files are read from ``configs/``
beside the ``pipelines`` package.
"""

from __future__ import annotations

import argparse
import re
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

from ctrobust.config import ConfigError

SUFFIX = ".yaml"
SENTENCE_END = re.compile(r"(?<=[.:])\s+(?=[A-Z(])")


def configs_folder() -> Traversable:
    """Where the shipped configs are: the installed package data, else the checkout's."""
    try:
        return resources.files("pipelines.configs")
    except ModuleNotFoundError:
        return Path(__file__).resolve().parents[1] / "configs"


def shipped_configs() -> dict[str, Traversable]:
    """Name (file name without .yaml) -> config file, sorted by name."""
    found = {
        entry.name.removesuffix(SUFFIX): entry
        for entry in configs_folder().iterdir()
        if entry.name.endswith(SUFFIX) and entry.is_file()
    }
    return dict(sorted(found.items()))


def resolve_config_path(argument: str) -> Path | Traversable:
    """A YAML file path as given, or the shipped config of that name (``demo``)."""
    path = Path(argument)
    if path.is_file():
        return path
    if path.is_dir():
        raise ConfigError(f"config '{argument}' is a folder, not a YAML file")
    shipped = shipped_configs()
    if argument in shipped and path.suffix == "":
        return shipped[argument]
    if path.suffix or len(path.parts) > 1:
        raise ConfigError(f"config file '{argument}' not found")
    names = ", ".join(shipped) or "none"
    raise ConfigError(f"config '{argument}' is neither a file nor a shipped config ({names})")


def description(config: Traversable) -> str:
    """The first sentence of a config file's leading comment, which says what it runs."""
    words = []
    for line in config.read_text().splitlines():
        if not line.startswith("#"):
            break
        words.append(line.lstrip("#").strip())
    return SENTENCE_END.split(" ".join(words), maxsplit=1)[0]


def cmd_config_list(args: argparse.Namespace) -> int:
    configs = shipped_configs()
    width = max((len(name) for name in configs), default=0)
    for name, config in configs.items():
        print(f"{name:<{width}}  {description(config)}")
    return 0


def cmd_config_show(args: argparse.Namespace) -> int:
    config = shipped_configs().get(args.name)
    if config is None:
        raise ConfigError(
            f"config show: no shipped config '{args.name}' (ctrobust config list names them)"
        )
    print(config.read_text(), end="")
    return 0


def add_config_parser(sub: argparse._SubParsersAction) -> None:
    """The ``config`` command and its ``list`` / ``show NAME`` subcommands."""
    config = sub.add_parser(
        "config",
        help="list the configs that ship with ctrobust, or print one",
        description="The shipped configs; `ctrobust run NAME` runs one by name.",
    )
    actions = config.add_subparsers(dest="action", required=True, metavar="ACTION")
    listing = actions.add_parser("list", help="names and one-line descriptions")
    listing.set_defaults(func=cmd_config_list)
    show = actions.add_parser("show", help="print a shipped config (copy it to edit it)")
    show.add_argument("name", help="a name from `ctrobust config list`, e.g. demo")
    show.set_defaults(func=cmd_config_show)
