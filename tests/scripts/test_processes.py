"""scripts/processes.py: a started process dies with whoever started it, even when that one is SIGKILLed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

STARTER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from scripts.processes import Processes
    from scripts.stack import ChildSpec
    running = Processes(specs={"sleeper": ChildSpec("sleeper", ("sleep", "300"), "tcp://127.0.0.1:9", {})},
                        workdir=Path(sys.argv[1]))
    running.start("sleeper")
    print(running.procs["sleeper"].pid, flush=True)
    time.sleep(300)
""")


def alive(pid: int) -> bool:
    """Running, not merely a zombie waiting for init to reap it."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "State:\tZ" not in status


def test_a_started_process_dies_when_its_starter_is_killed(tmp_path):
    # A pytest or bench killed by a CI timeout runs no `finally`: its Rasa servers and gateways used to live on.
    starter = subprocess.Popen([sys.executable, "-c", STARTER, str(tmp_path)], stdout=subprocess.PIPE, text=True,
                               cwd=Path(__file__).resolve().parents[2])
    child = int(starter.stdout.readline())
    try:
        assert alive(child)
        os.kill(starter.pid, signal.SIGKILL)
        starter.wait()
        deadline = time.monotonic() + 5
        while alive(child) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not alive(child)
    finally:
        if alive(child):
            os.kill(child, signal.SIGKILL)
