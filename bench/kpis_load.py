"""KPI dashboard load: what one /api/kpis over N call records costs, and what it does to the calls' event loop.

Writes N synthetic call records (each with an 8-turn transcript and turn metrics, the size of a real one) over the
days before now, then asks the dashboard's worker (bot/web/dashboard.py KpiWorker → bot/kpi_worker.py, a separate
process) for their KPIs while a 10 ms ticker runs on this event loop, the way a call's audio would. Prints the
compute time, the worker's peak memory, and the loop's lag (max and p99 of how late each tick ran).
`--in-thread` computes in a thread of this process instead (the old way), to compare.

    .venv/bin/python bench/kpis_load.py [--calls 20000 140000] [--in-thread]
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bot.kpis import Period  # noqa: E402
from bot.web.dashboard import KpiWorker  # noqa: E402
from settings import GatewaySettings  # noqa: E402

TICK_S = 0.010
INTENTS = ["check_balance", "transfer_money", "report_lost_card", "human_agent", "branch_hours", "nlu_fallback"]


def synthetic_record(n: int, started: float, rng: random.Random) -> dict:
    outcome = rng.choices(["served_by_bot", "handoff", "abandoned"], [80, 15, 5])[0]
    turns = []
    for turn in range(4):
        turns.append({"t": turn * 8.0, "who": "bot", "text": "您好,这里是智能语音服务,请问有什么可以帮您?"})
        turns.append({"t": turn * 8.0 + 4, "who": "caller", "source": "speech", "text": "我想查一下我的余额谢谢",
                      "nlu": {"intent": rng.choice(INTENTS), "confidence": 0.9, "fallback": False}})
    return {
        "call_id": f"sip-{n:032x}", "caller_number": "138****0001", "started_at": started,
        "ended_at": started + rng.uniform(20, 300), "asr_available": True, "transcript": turns,
        "intents": rng.sample(INTENTS, 2), "turn_metrics": [{"voice_to_voice_ms": rng.uniform(300, 1500),
                                                             "asr_ms": 120.0, "nlu_ms": 80.0} for _ in range(4)],
        "outcome": outcome, "handoff_reason": "human_agent" if outcome == "handoff" else None,
        "handoff_queue": "general" if outcome == "handoff" else None, "time_to_agent_s": rng.uniform(2, 40),
        "end_cause": "remote_hangup", "channel": "sip", "caller_key": f"{rng.randrange(n // 3 + 1):032x}",
        "barge_ins": rng.randrange(3), "no_inputs": rng.randrange(2), "completed_tasks": ["check_balance"]
        if rng.random() < 0.7 else [], "elderly": rng.random() < 0.1, "survey_offered": True,
        "survey_score": rng.choice([1, 1, 1, 2, 3, None]), "bot_hangup": "goodbye",
    }


def write_records(folder: Path, calls: int, now: float) -> Period:
    """`calls` records spread over the 7 days before now, one file a UTC day. Returns the period they cover."""
    rng = random.Random(10)
    start = now - 7 * 86400
    files: dict[str, list[str]] = {}
    for n in range(calls):
        record = synthetic_record(n, start + n * (7 * 86400 / calls), rng)
        day = time.strftime("%Y%m%d", time.gmtime(record["ended_at"]))
        files.setdefault(day, []).append(json.dumps(record, ensure_ascii=False))
    for day, lines in files.items():
        (folder / f"calls-{day}.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return Period(start, now)


async def ticker(lags: list[float], stop: asyncio.Event) -> None:
    """How late each 10 ms tick runs: what a call's 20 ms audio frames would suffer."""
    loop = asyncio.get_running_loop()
    due = loop.time() + TICK_S
    while not stop.is_set():
        await asyncio.sleep(max(0.0, due - loop.time()))
        lags.append(max(0.0, loop.time() - due))
        due += TICK_S


async def idle_lag(seconds: float) -> list[float]:
    """The loop's lag with nothing to compute: the machine's own noise (other processes on its cores)."""
    lags: list[float] = []
    stop = asyncio.Event()
    ticking = asyncio.create_task(ticker(lags, stop))
    await asyncio.sleep(seconds)
    stop.set()
    await ticking
    return sorted(lags)


async def measure(folder: Path, period: Period, now: float, in_thread: bool) -> dict:
    idle = await idle_lag(2.0)
    lags: list[float] = []
    stop = asyncio.Event()
    ticking = asyncio.create_task(ticker(lags, stop))
    await asyncio.sleep(0.2)
    began = time.perf_counter()
    if in_thread:
        from bot.kpi_sources import kpis_from_files

        result = (await asyncio.to_thread(kpis_from_files, folder, period, now=now)).as_json()
        peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    else:
        worker = KpiWorker(dataclasses.replace(GatewaySettings(), call_records_dir=str(folder)), timeout_s=600)
        result = await worker.kpis(("bench",), period, now=now, include_console=False, bucket_s=None)
        peak_kb = worker.last_peak_rss_kb or 0
    elapsed = time.perf_counter() - began
    stop.set()
    await ticking
    lags.sort()
    return {"calls": result["calls"], "compute_s": elapsed, "peak_mb": peak_kb / 1024,
            "lag_max_ms": lags[-1] * 1000, "lag_p99_ms": lags[int(0.99 * (len(lags) - 1))] * 1000,
            "idle_max_ms": idle[-1] * 1000, "idle_p99_ms": idle[int(0.99 * (len(idle) - 1))] * 1000}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, nargs="+", default=[20_000, 140_000])
    parser.add_argument("--in-thread", action="store_true", help="compute in a thread (the old way) to compare")
    args = parser.parse_args()
    where = "thread of the gateway" if args.in_thread else "worker process"
    for calls in args.calls:
        with tempfile.TemporaryDirectory(prefix="kpis-load-") as tmp:
            now = time.time()
            period = write_records(Path(tmp), calls, now)
            size_mb = sum(p.stat().st_size for p in Path(tmp).iterdir()) / 1e6
            figures = asyncio.run(measure(Path(tmp), period, now, args.in_thread))
        print(f"records={calls} ({size_mb:.0f} MB of JSON Lines) in a {where}: calls counted={figures['calls']} "
              f"compute={figures['compute_s']:.2f}s peak_rss={figures['peak_mb']:.0f}MB "
              f"loop_lag max={figures['lag_max_ms']:.1f}ms p99={figures['lag_p99_ms']:.1f}ms "
              f"(idle machine: max={figures['idle_max_ms']:.1f}ms p99={figures['idle_p99_ms']:.1f}ms)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
