"""A door's server stops on SIGINT or SIGTERM, and leaves no handler of its own behind."""

import asyncio
import os
import signal

import pytest

from telephony.signals import until_signalled


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
async def test_until_signalled_returns_on_the_signal_and_removes_its_handlers(sig):
    asyncio.get_running_loop().call_later(0.05, os.kill, os.getpid(), sig)
    await asyncio.wait_for(until_signalled(), 5)
    loop = asyncio.get_running_loop()
    assert not loop.remove_signal_handler(signal.SIGINT) and not loop.remove_signal_handler(signal.SIGTERM)
