"""``sppnet demo``: the README's main job.

Until the detector pipeline lands this runs the SPP op demonstration of :mod:`sppnet.cli.spp_demo`
(several image sizes in, one fixed-length vector out).
"""

from __future__ import annotations

import argparse

COMMAND = ("demo",)
HELP = "The README's main job (currently: the SPP op demonstration on real photos)."


def add_arguments(parser: argparse.ArgumentParser) -> None:
    del parser  # The SPP demonstration takes no options.


def run(args: argparse.Namespace) -> int:
    from sppnet.cli import spp_demo

    return spp_demo.run(args)
