"""A Ctrl-C recorded by the CLI's handler is raised again at the sampler's checkpoints."""

import os
import signal

import pytest

from multilevel import interrupt


def test_a_swallowed_ctrl_c_is_raised_again_at_the_next_check():
    with interrupt.recorded():
        try:
            os.kill(os.getpid(), signal.SIGINT)
            signal.sigtimedwait([], 0)  # let the handler run here
        except KeyboardInterrupt:
            pass  # swallowed, as code that discards exceptions would
        with pytest.raises(KeyboardInterrupt):
            interrupt.check()
    interrupt.check()  # cleared with the block: later runs are not interrupted
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_without_the_cli_nothing_is_installed_or_recorded():
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    interrupt.check()
