"""Turn Ctrl-C (SIGINT) and pre-emption (SIGTERM) into a request to stop at the next safe point.

A training loop polls :attr:`GracefulStop.requested` after each optimisation step and, when set,
saves a checkpoint and stops. A second signal of the same kind while stopping raises
``KeyboardInterrupt`` at once (the user insists; an atomic checkpoint write in progress is then
abandoned without damaging the previous checkpoint).
"""

from __future__ import annotations

import signal
import sys
import threading
from types import FrameType, TracebackType
from typing import Any

__all__ = ["GracefulStop", "ignore_stop_signals"]

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class GracefulStop:
    """Context manager that records SIGINT/SIGTERM instead of dying on the first one.

    Outside the main thread (where Python cannot install handlers) it installs nothing and
    :attr:`requested` stays ``False``.

    Attributes:
        requested: set once a signal arrived.
        signal_name: ``"SIGINT"`` or ``"SIGTERM"`` once set.
    """

    def __init__(self, message: str = "stopping after this step and saving a checkpoint") -> None:
        self.requested = False
        self.signal_name: str | None = None
        self._message = message
        self._previous: dict[int, Any] = {}

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        name = signal.Signals(signum).name
        if self.requested:
            raise KeyboardInterrupt(f"second {name}: aborting without a checkpoint")
        self.requested = True
        self.signal_name = name
        print(f"\n{name} received: {self._message} (send it again to abort)", file=sys.stderr)

    def __enter__(self) -> GracefulStop:
        if threading.current_thread() is threading.main_thread():
            for s in _SIGNALS:
                self._previous[s] = signal.getsignal(s)
                signal.signal(s, self._handle)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for s, handler in self._previous.items():
            signal.signal(s, handler)
        self._previous.clear()


def ignore_stop_signals(worker_id: int | None = None) -> None:
    """Make this process ignore SIGINT/SIGTERM; a ``DataLoader`` ``worker_init_fn``.

    Ctrl-C reaches every process of the terminal's process group, data-loader workers included;
    a worker that died of it would make the main process's next fetch fail before it could save
    its checkpoint. Workers still exit when the main process goes away.
    """
    for s in _SIGNALS:
        signal.signal(s, signal.SIG_IGN)
