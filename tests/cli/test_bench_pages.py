"""``sppnet.benchmarks._pages``: the allocator policy of ``sppnet bench ops`` takes effect.

Each policy is set in a child process (it lasts for the process's life), which reports the
fraction of a 4 MiB tensor's pages faulted when it is allocated after an 8 MiB one was freed."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sppnet.benchmarks._pages import set_pages

_CHILD = """
from sppnet.benchmarks._pages import fresh_fault_fraction, set_pages
set_pages({pages!r})
print(fresh_fault_fraction())
"""


def _fraction_after(pages: str) -> float:
    done = subprocess.run(
        [sys.executable, "-c", _CHILD.format(pages=pages)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    return float(done.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")
def test_fresh_pages_fault_again_and_reused_ones_do_not():
    assert _fraction_after("fresh") > 0.9
    assert _fraction_after("reused") < 0.1


def test_unknown_policy_is_refused():
    with pytest.raises(ValueError, match="pages must be one of"):
        set_pages("huge")
