"""How a door's command-line server waits: until SIGINT (Ctrl-C) or SIGTERM (a supervisor stopping it)."""

from __future__ import annotations

import asyncio
import signal


async def until_signalled() -> None:
    """Returns on the first SIGINT or SIGTERM, so the caller can close its server cleanly instead of dying mid-call."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
