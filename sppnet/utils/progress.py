"""Optional tqdm progress bars."""

from __future__ import annotations

from typing import Any

__all__ = ["progress_bar"]


def progress_bar(iterable: Any, desc: str, progress: bool, unit: str = "img") -> Any:
    """``iterable`` wrapped in a tqdm bar when ``progress`` is on, else ``iterable`` itself."""
    if not progress:
        return iterable
    from tqdm.auto import tqdm

    return tqdm(iterable, desc=desc, unit=unit, dynamic_ncols=True, leave=False)
