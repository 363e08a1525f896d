"""Real SIP peers for the telephony tests: sipp scenarios and a headless baresip.

Each peer runs in its own process group, killed if it outlives its timeout, so a hung peer never outlives its test.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from pathlib import Path
from typing import Callable

from telephony.sip.transport import free_port

SIPP = shutil.which("sipp")
BARESIP = shutil.which("baresip")
BARESIP_MODULES = Path("/usr/lib/baresip/modules")
SCENARIOS = Path(__file__).parent / "sip" / "scenarios"


async def run_peer(argv: list[str], cwd: Path, timeout: float) -> tuple[int, str]:
    """Run a peer to completion; its exit code and output (stdout and stderr together)."""
    process = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT, start_new_session=True, cwd=cwd,
    )
    try:
        output, _ = await asyncio.wait_for(process.communicate(), timeout)
    finally:
        if process.returncode is None:
            os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
    return process.returncode or 0, output.decode(errors="replace")


async def run_sipp(
    scenario: str, target: tuple[str, int], tmp_path: Path, *extra: str, calls: int = 1, timeout: float = 40.0
) -> str:
    """Run sipp UAC `scenario` (from sip/scenarios) `calls` times against `target`; returns its output and fails
    the test on a non-zero exit. sipp's own timeout fires 5 s before ours so its error log gets written."""
    error_log = tmp_path / "sipp_errors.log"
    code, output = await run_peer([
        SIPP or "sipp", f"{target[0]}:{target[1]}", "-sf", str(SCENARIOS / scenario), "-s", "ivr",
        "-i", "127.0.0.1", "-mi", "127.0.0.1", "-p", str(free_port()), "-mp", str(free_port()), "-m", str(calls),
        "-timeout", f"{int(timeout) - 5}s", "-timeout_error", "-nostdin",
        "-trace_err", "-error_file", str(error_log), *extra,
    ], tmp_path, timeout)
    errors = error_log.read_text(errors="replace") if error_log.exists() else ""
    assert code == 0, f"sipp {scenario} exited {code}\n{errors[-3000:]}\n{output[-2000:]}"
    return output


def write_baresip_config(folder: Path, audio_source: Path, caller_number: str) -> None:
    """A headless baresip in `folder`: plays `audio_source` as its microphone, dumps what it hears
    (sndfile filter, `dump-*-dec.wav` in `folder`)."""
    sip_port, rtp_port = free_port(), free_port() & ~1
    folder.joinpath("config").write_text("\n".join([
        "poll_method epoll",
        f"module_path {BARESIP_MODULES}",
        f"sip_listen 127.0.0.1:{sip_port}",
        # Signal the loopback address it really sends from: the gateway latches media only from the SDP's address.
        "net_interface 127.0.0.1",
        f"audio_source aufile,{audio_source}",
        f"rtp_ports {rtp_port}-{rtp_port + 1}",
        f"snd_path {folder}",
        *[f"module {name}.so" for name in ("g711", "aufile", "sndfile", "account", "menu")],
        "",
    ]))
    folder.joinpath("accounts").write_text(f"<sip:{caller_number}@127.0.0.1>;regint=0\n")


async def wait_until(condition: Callable[[], bool], timeout: float = 3.0) -> None:
    """Poll `condition` until it holds or `timeout` passes (the caller asserts what it needs afterwards)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not condition() and loop.time() < deadline:
        await asyncio.sleep(0.02)
