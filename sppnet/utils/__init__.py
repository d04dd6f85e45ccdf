"""sppnet.utils: small helpers shared by the whole library (see docs/architecture.md).

- :mod:`sppnet.utils.atomic`: atomic file writes (every checkpoint, cache and result goes through
  :func:`atomic_write`).
"""

from sppnet.utils.atomic import (
    atomic_write,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
)

__all__ = ["atomic_write", "atomic_write_bytes", "atomic_write_json", "atomic_write_text"]
