"""SIP door load benchmark: sipp against SipCallBridge (SIP + RTP) with the media-only echo bot.

1. Media capacity: for N in --calls, sipp places N overlapping calls that each send 7 s of G.711 A-law
   (/usr/share/sip-tester/g711a.pcap) which the bridge echoes back. A step passes when no call fails,
   RTP loss seen by the bridge is under 1 % and the p95 RFC 3550 jitter is under 20 ms above the
   10-call baseline. The largest passing N is `max_calls`.
2. Setup rate: for R in --rates, sipp sets up and tears down 5*R signalling-only calls at R calls/s.
   The largest R without a failed call is `setup_cps`.

Traffic stays on 127.0.0.1; every loop is bounded by the step lists. The last line reads
`max_calls=N setup_cps=M`. Run with `make bench-sip` (bench/sip_load.sh).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import shutil
import signal
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from settings import Settings  # noqa: E402
from telephony.rtp.ports import PortAllocator  # noqa: E402
from telephony.sip.transport import free_port  # noqa: E402
from telephony.sip_calls import MediaEchoCall, SipCallBridge  # noqa: E402

SCENARIOS = Path(__file__).parent / "scenarios"
MAX_LOSS = 0.01
MAX_ADDED_JITTER_MS = 20.0
BASELINE_CALLS = 10
RTP_RANGE = (40000, 48000)  # its own range, away from a gateway running with the default one


@dataclasses.dataclass
class MediaStep:
    calls: int
    failed: bool
    loss: float
    jitter_p95_ms: float

    def passes(self, baseline_jitter_ms: float) -> bool:
        return not self.failed and self.loss < MAX_LOSS and self.jitter_p95_ms - baseline_jitter_ms < MAX_ADDED_JITTER_MS


def bench_settings() -> Settings:
    base = Settings()
    sip = dataclasses.replace(base.sip, max_calls=5000, rate_limit_per_s=1e6, rtp_port_min=RTP_RANGE[0],
                              rtp_port_max=RTP_RANGE[1])
    return dataclasses.replace(base, sip=sip)


async def run_sipp(scenario: str, target: tuple[str, int], workdir: Path, *args: str, timeout: float) -> bool:
    """True when sipp completed every call. sipp runs in its own process group, always reaped."""
    command = [
        "sipp", f"{target[0]}:{target[1]}", "-sf", str(SCENARIOS / scenario), "-s", "ivr", "-i", "127.0.0.1",
        "-mi", "127.0.0.1", "-p", str(free_port()), "-mp", str(free_port()), "-nostdin",
        "-timeout", f"{int(timeout)}s", "-timeout_error", "-max_socket", "5000", *args,
    ]
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, start_new_session=True,
        cwd=workdir,
    )
    try:
        await asyncio.wait_for(process.wait(), timeout + 10)
    finally:
        if process.returncode is None:
            os.killpg(process.pid, signal.SIGKILL)
            await process.wait()
    return process.returncode == 0


async def media_step(calls: int, workdir: Path) -> MediaStep:
    settings = bench_settings()
    bridge = SipCallBridge(settings, MediaEchoCall, PortAllocator(*RTP_RANGE))
    stats: list = []
    bridge.on_call_closed = lambda call, rtp: stats.append(rtp) if rtp is not None else None
    await bridge.start("127.0.0.1", free_port())
    try:
        # Ramp up within ~3 s so that all calls overlap during their 7 s of speech.
        rate = max(10, calls // 3)
        ok = await run_sipp("media_call.xml", bridge.address, workdir, "-m", str(calls), "-l", str(calls),
                            "-r", str(rate), timeout=30 + calls / rate)
    finally:
        await bridge.close()
    received = sum(s.packets_in for s in stats)
    lost = sum(s.packets_lost for s in stats)
    jitter = float(np.percentile([s.jitter_ms for s in stats], 95)) if stats else float("inf")
    failed = not ok or len(stats) != calls
    return MediaStep(calls, failed, lost / max(1, received + lost), jitter)


async def setup_step(rate: int, workdir: Path) -> bool:
    bridge = SipCallBridge(bench_settings(), MediaEchoCall, PortAllocator(*RTP_RANGE))
    await bridge.start("127.0.0.1", free_port())
    try:
        return await run_sipp("setup_call.xml", bridge.address, workdir, "-m", str(5 * rate), "-r", str(rate),
                              "-l", str(5 * rate), timeout=30)
    finally:
        await bridge.close()


async def main(call_steps: list[int], rate_steps: list[int]) -> None:
    with tempfile.TemporaryDirectory(prefix="sip-load-") as tmp:
        workdir = Path(tmp)
        baseline = await media_step(BASELINE_CALLS, workdir)
        print(f"baseline {BASELINE_CALLS} calls: failed={baseline.failed} loss={baseline.loss:.3%} "
              f"jitter_p95={baseline.jitter_p95_ms:.2f} ms", flush=True)
        max_calls = 0
        for calls in call_steps:
            step = await media_step(calls, workdir)
            verdict = "ok" if step.passes(baseline.jitter_p95_ms) else "FAIL"
            print(f"media {calls:4d} concurrent calls: failed={step.failed} loss={step.loss:.3%} "
                  f"jitter_p95={step.jitter_p95_ms:.2f} ms (+{step.jitter_p95_ms - baseline.jitter_p95_ms:.2f}) {verdict}",
                  flush=True)
            if verdict != "ok":
                break
            max_calls = calls
        setup_cps = 0
        for rate in rate_steps:
            ok = await setup_step(rate, workdir)
            print(f"setup {rate:4d} calls/s for 5 s: {'ok' if ok else 'FAIL'}", flush=True)
            if not ok:
                break
            setup_cps = rate
    print(f"max_calls={max_calls} setup_cps={setup_cps}")


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, nargs="+", default=[50, 100, 200, 250, 300, 400])
    parser.add_argument("--rates", type=int, nargs="+", default=[25, 50, 100, 200])
    return parser.parse_args(argv)


if __name__ == "__main__":
    if shutil.which("sipp") is None:
        sys.exit("sipp is not installed (Debian package sip-tester; run `make apt`)")
    arguments = parse_args(sys.argv[1:])
    asyncio.run(main(arguments.calls, arguments.rates))
