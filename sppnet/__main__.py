"""``python -m sppnet`` is the ``sppnet`` command."""

import sys

from sppnet.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
