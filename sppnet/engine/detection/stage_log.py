"""What a training stage reports."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["StageLog"]


@dataclass
class StageLog:
    """What a stage did: its name, seconds, per-step or per-round records, and facts."""

    name: str
    seconds: float = 0.0
    records: list[dict[str, float]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "seconds": self.seconds,
            "info": self.info,
            "records": self.records,
        }
