"""Media-only benchmark of telephony/rtp: N concurrent RtpSessions echoing G.711 over loopback UDP.

Each simulated phone is itself an RtpSession that sends a 20 ms μ-law frame every 20 ms (one shared
clock drives them all); each bridge-side session echoes what it hears straight back, the way a media-only
echo bot would. Both sides run in this one process, so the figures are conservative: the gateway would
carry only the bridge half.

Prints, per N: packet loss and the RFC 3550 interarrival jitter seen by the bridge side and by the phones
(p95 over sessions), and the process CPU used, then a last line `max_sessions=N` (the largest N with loss
under 1 % and phone-side p95 jitter under 20 ms).

    .venv/bin/python bench/rtp_media.py [--sessions 50 100 200] [--seconds 5]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from telephony.rtp.ports import PortAllocator  # noqa: E402
from telephony.rtp.session import RtpSession  # noqa: E402

FRAME = (3000 * np.sin(2 * np.pi * 440 * np.arange(160) / 8000)).astype("<i2").tobytes()


async def open_pair(allocator: PortAllocator) -> tuple[RtpSession, RtpSession]:
    bridge = await RtpSession.open(allocator, None, media_timeout_s=3600)
    phone = await RtpSession.open(allocator, ("127.0.0.1", bridge.local_port), media_timeout_s=3600)
    bridge.set_remote(("127.0.0.1", phone.local_port))
    bridge.on_audio = bridge.send_audio  # the echo bot
    return bridge, phone


async def drive(phones: list[RtpSession], seconds: float) -> int:
    """Send one frame from every phone each 20 ms on an absolute schedule; returns frames sent per phone."""
    loop = asyncio.get_running_loop()
    start, ticks = loop.time(), int(seconds / 0.02)
    for tick in range(ticks):
        for phone in phones:
            phone.send_audio(FRAME)
        await asyncio.sleep(max(0.0, start + (tick + 1) * 0.02 - loop.time()))
    await asyncio.sleep(0.2)  # let the last echoes arrive
    return ticks


async def run_level(allocator: PortAllocator, sessions: int, seconds: float) -> dict[str, float]:
    pairs = [await open_pair(allocator) for _ in range(sessions)]
    bridges, phones = [b for b, _ in pairs], [p for _, p in pairs]
    cpu_before, wall_before = time.process_time(), time.perf_counter()
    sent = await drive(phones, seconds)
    cpu = (time.process_time() - cpu_before) / (time.perf_counter() - wall_before)
    bridge_in = sum(b.stats().packets_in for b in bridges)
    phone_in = sum(p.stats().packets_in for p in phones)
    result = {
        "sessions": sessions,
        "loss_pct": 100.0 * (1 - phone_in / (sent * sessions)),
        "bridge_loss_pct": 100.0 * (1 - bridge_in / (sent * sessions)),
        "bridge_jitter_p95_ms": float(np.percentile([b.stats().jitter_ms for b in bridges], 95)),
        "phone_jitter_p95_ms": float(np.percentile([p.stats().jitter_ms for p in phones], 95)),
        "cpu_pct": 100.0 * cpu,
    }
    for session in bridges + phones:
        session.close()
    assert not allocator.in_use, "ports leaked"
    return result


async def main(levels: list[int], seconds: float) -> None:
    allocator = PortAllocator(40000, 40000 + 4 * max(levels) + 10)
    best = 0
    for sessions in levels:
        r = await run_level(allocator, sessions, seconds)
        print(f"sessions={sessions} loss_pct={r['loss_pct']:.2f} bridge_loss_pct={r['bridge_loss_pct']:.2f} "
              f"bridge_jitter_p95_ms={r['bridge_jitter_p95_ms']:.1f} phone_jitter_p95_ms={r['phone_jitter_p95_ms']:.1f} "
              f"cpu_pct={r['cpu_pct']:.0f}", flush=True)
        if r["loss_pct"] < 1.0 and r["phone_jitter_p95_ms"] < 20.0:
            best = sessions
    print(f"max_sessions={best}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sessions", type=int, nargs="+", default=[50, 100, 200, 300])
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    asyncio.run(main(args.sessions, args.seconds))
