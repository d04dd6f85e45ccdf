import os
import signal

import pytest

from sppnet.engine.signals import GracefulStop


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_first_signal_is_recorded_second_aborts(sig, capsys):
    before = signal.getsignal(sig)
    with GracefulStop() as stop:
        assert not stop.requested
        os.kill(os.getpid(), sig)
        assert stop.requested and stop.signal_name == signal.Signals(sig).name
        with pytest.raises(KeyboardInterrupt, match="second"):
            os.kill(os.getpid(), sig)
    assert signal.getsignal(sig) is before  # handlers restored
    assert "received" in capsys.readouterr().err
