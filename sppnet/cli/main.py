"""The ``sppnet`` command: collects the sub-commands defined by the modules of :mod:`sppnet.cli`."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys
from collections.abc import Sequence
from types import ModuleType

import sppnet.cli as cli_package


def discover_commands() -> list[ModuleType]:
    """Every module of :mod:`sppnet.cli` that defines ``COMMAND``, sorted by its words."""
    modules = []
    for info in pkgutil.iter_modules(cli_package.__path__):
        if info.name.startswith("_") or info.name == "main":
            continue
        module = importlib.import_module(f"{cli_package.__name__}.{info.name}")
        if hasattr(module, "COMMAND"):
            modules.append(module)
    return sorted(modules, key=lambda m: tuple(m.COMMAND))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="sppnet",
        description="SPP-net: spatial pyramid pooling for classification and detection.",
    )
    groups: dict[tuple[str, ...], argparse._SubParsersAction] = {
        (): parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    }
    for module in discover_commands():
        words = tuple(module.COMMAND)
        for depth in range(1, len(words)):
            prefix = words[:depth]
            if prefix not in groups:
                group = groups[words[: depth - 1]].add_parser(
                    prefix[-1], help=f"{prefix[-1]} commands"
                )
                groups[prefix] = group.add_subparsers(
                    dest="_".join(("command", *prefix)), metavar="COMMAND", required=True
                )
        sub = groups[words[:-1]].add_parser(words[-1], help=module.HELP, description=module.HELP)
        module.add_arguments(sub)
        sub.set_defaults(_run=module.run)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args._run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
