"""SPP-net vs R-CNN detection speed and latency: ``python benchmarks/bench_detect.py [ARGS]``.

The same as ``sppnet bench detect [ARGS]`` (see :mod:`sppnet.cli.bench_detect` and docs/speed.md).
On a shared machine run it with ``OMP_WAIT_POLICY=PASSIVE``.
"""

import sys

from sppnet.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["bench", "detect", *sys.argv[1:]]))
