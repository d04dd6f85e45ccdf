"""Command-line interface. Nothing in the library imports this package.

Every module here that defines ``COMMAND`` is a sub-command, discovered by :mod:`sppnet.cli.main`:

- ``COMMAND: tuple[str, ...]``: the words that call it, e.g. ``("bench", "ops")`` for
  ``sppnet bench ops``;
- ``HELP: str``: one line for ``--help``;
- ``add_arguments(parser: argparse.ArgumentParser) -> None``;
- ``run(args: argparse.Namespace) -> int``: the exit status.
"""
