"""The SPP op benchmark as a script: ``python benchmarks/bench_ops.py [--quick] [--json PATH]``.

The same as ``sppnet bench ops`` (see :mod:`sppnet.cli.bench_ops` for the options).
"""

from __future__ import annotations

import sys

from sppnet.cli.main import main

if __name__ == "__main__":
    sys.exit(main(["bench", "ops", *sys.argv[1:]]))
