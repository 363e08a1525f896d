"""`make bench-cluster`: SIP calls with audio through Kamailio into the whole cluster, while parts of it fail.

The cluster is the one `make cluster` runs (scripts/cluster/topology.py), started on free ports in a temporary
directory and stopped at the end. sipp offers calls through Kamailio: each one 7 s of G.711 speech from a pcap
(bench/scenarios/media_call.xml), then BYE. Four phases:

1. spread:   nothing fails. The calls are spread over both gateways.
2. gateway:  gateway1 is SIGKILLed mid-phase. failover_s is the time from the kill until Kamailio marks it down
             (its dispatcher:dst-down log line); calls offered from 5 s after the kill must all succeed.
3. rasa:     one Rasa server is SIGKILLed mid-phase. lost_turns counts caller turns no Rasa answered (the gateways'
             ivr_voice_rasa_unavailable_turns_total): conversations in progress go on with the other server.
4. postgres: PostgreSQL is stopped (fast shutdown) and started again mid-phase. Meanwhile turns fail closed:
             the dialogue answers with its apology and a handoff (failed_closed counts those calls; lost_turns
             those Rasa did not answer at all); recovery_s is the time from the restart until every gateway's
             /healthz is green again.

In each failure phase, `window` is the calls offered around the failure and `after` the calls offered once it is
over; "0 failed calls outside the kill windows" means every `after` has failed=0. The last line sums it up:

    cluster spread_failed=0 after_failed=0 window_failed=F failover_s=X lost_turns_rasa=R lost_turns_postgres=P
            failed_closed_postgres=C

Calls are offered slowly (--rate, default 0.25/s: ~2 callers at a time): one 2-core machine runs both gateways,
both Rasa servers and the rest, and each gateway admits 2 callers by default (VOICE_MAX_CALLS).
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from call_contract import REASON_ACTION_UNAVAILABLE  # noqa: E402
from scripts.cluster.running import RunningCluster, SippResult, running_cluster  # noqa: E402
from scripts.cluster.topology import gateway_name  # noqa: E402
from scripts.stack import find_model  # noqa: E402
from settings import get_settings  # noqa: E402

LOST_TURNS = "ivr_voice_rasa_unavailable_turns_total"
CALL_OUTCOMES = "ivr_voice_call_outcomes_total"
FAILOVER_BOUND_S = 5.0  # the bound: new calls reach the survivor within 5 s of a gateway's death


@dataclass
class Phase:
    name: str
    window: SippResult
    after: SippResult | None = None
    figures: dict[str, str] | None = None

    def line(self) -> str:
        parts = [f"phase={self.name}", f"offered={self.window.offered}", f"answered={self.window.successful}",
                 f"failed={self.window.failed}"]
        if self.after is not None:
            parts += [f"after_offered={self.after.offered}", f"after_answered={self.after.successful}",
                      f"after_failed={self.after.failed}"]
        parts += [f"{key}={value}" for key, value in (self.figures or {}).items()]
        return " ".join(parts)


def lost_turns(cluster: RunningCluster) -> float:
    return sum(cluster.metric(i, LOST_TURNS) for i, name in enumerate(cluster.gateways) if cluster.is_up(name))


def apologies(cluster: RunningCluster) -> float:
    """Calls the dialogue ended with its apology and a handoff (a store or the action server failing a turn: the
    call failed closed), counted by the gateways when the call ends."""
    reason = f'reason="{REASON_ACTION_UNAVAILABLE}"'
    return sum(cluster.metric(i, CALL_OUTCOMES, reason) for i, name in enumerate(cluster.gateways)
               if cluster.is_up(name))


def spread(cluster: RunningCluster, calls: int, rate: float) -> Phase:
    before = [cluster.calls_finished_by(i) for i in range(len(cluster.gateways))]
    result = cluster.sip_calls(calls, rate)
    time.sleep(1)  # a gateway counts a call once the BYE is answered
    per_gateway = [cluster.calls_finished_by(i) - b for i, b in enumerate(before)]
    return Phase("spread", result, figures={"per_gateway": "/".join(str(n) for n in per_gateway)})


def gateway_kill(cluster: RunningCluster, calls: int, rate: float, into_s: float) -> Phase:
    victim = gateway_name(0)
    run = cluster.start_sip_calls(calls, rate)
    time.sleep(into_s)
    log_mark = cluster.log_size("kamailio")
    cluster.kill(victim)
    killed_at = time.monotonic()
    marked_down_s = cluster.wait_log("kamailio", "dst-down", since=log_mark, timeout_s=30)
    failover_s = (marked_down_s - killed_at) if marked_down_s else None
    window = run.wait()
    time.sleep(max(0.0, killed_at + FAILOVER_BOUND_S - time.monotonic()))
    after = cluster.sip_calls(max(2, calls // 2), rate)
    up_mark = cluster.log_size("kamailio")
    cluster.start(victim)  # back for the next phases, once Kamailio's probes see it again
    cluster.wait_ready(victim)
    cluster.wait_log("kamailio", "dst-up", since=up_mark, timeout_s=30)
    return Phase("gateway", window, after, {"failover_s": f"{failover_s:.1f}" if failover_s else "none"})


def rasa_kill(cluster: RunningCluster, calls: int, rate: float, into_s: float) -> Phase:
    lost_before = lost_turns(cluster)
    run = cluster.start_sip_calls(calls, rate)
    time.sleep(into_s)
    cluster.kill("rasa1")
    window = run.wait()
    after = cluster.sip_calls(max(2, calls // 2), rate)
    return Phase("rasa", window, after, {"lost_turns": f"{lost_turns(cluster) - lost_before:g}"})


def postgres_restart(cluster: RunningCluster, calls: int, rate: float, into_s: float, down_s: float) -> Phase:
    lost_before, apologies_before = lost_turns(cluster), apologies(cluster)
    run = cluster.start_sip_calls(calls, rate)
    time.sleep(into_s)
    cluster.stop("postgres", sig=signal.SIGINT)  # PostgreSQL's fast shutdown, what an operator's restart does
    time.sleep(down_s)
    cluster.start("postgres")
    restarted_at = time.monotonic()
    cluster.wait_ready("postgres", timeout_s=60)
    recovery_s = cluster.wait_healthy(timeout_s=120)
    window = run.wait()
    after = cluster.sip_calls(max(2, calls // 2), rate)
    figures = {"lost_turns": f"{lost_turns(cluster) - lost_before:g}",
               "failed_closed": f"{apologies(cluster) - apologies_before:g}",
               "recovery_s": f"{recovery_s - restarted_at:.1f}" if recovery_s else "none"}
    return Phase("postgres", window, after, figures)


def summary(phases: list[Phase]) -> str:
    by_name = {phase.name: phase for phase in phases}
    after_failed = sum(phase.after.failed for phase in phases if phase.after)
    window_failed = sum(phase.window.failed for phase in phases if phase.name != "spread")
    return " ".join([
        "cluster", f"spread_failed={by_name['spread'].window.failed}", f"after_failed={after_failed}",
        f"window_failed={window_failed}", f"failover_s={by_name['gateway'].figures['failover_s']}",
        f"lost_turns_rasa={by_name['rasa'].figures['lost_turns']}",
        f"lost_turns_postgres={by_name['postgres'].figures['lost_turns']}",
        f"failed_closed_postgres={by_name['postgres'].figures['failed_closed']}"])


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=6, help="calls offered in each phase's window (default 6)")
    parser.add_argument("--rate", type=float, default=0.25, help="calls offered per second (default 0.25)")
    parser.add_argument("--into", type=float, default=8.0, help="seconds into a phase before the failure")
    parser.add_argument("--postgres-down", type=float, default=8.0,
                        help="seconds PostgreSQL stays down (long enough for turns to meet it)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    # SIGTERM unwinds like Ctrl-C, so the cluster's processes (each in its own process group) are stopped too
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    settings = get_settings()
    if find_model(settings.rasa.model_dir) is None:
        print(f"no trained Rasa model in {settings.rasa.model_dir}: run `make train`", file=sys.stderr)
        return 2
    env = {**os.environ, "CLUSTER_PROBE_INTERVAL_S": os.environ.get("CLUSTER_PROBE_INTERVAL_S", "1")}
    with running_cluster(env) as cluster:
        print(f"cluster up in {cluster.workdir}", flush=True)
        phases = [spread(cluster, args.calls, args.rate)]
        print(phases[-1].line(), flush=True)
        for run in (lambda: gateway_kill(cluster, args.calls, args.rate, args.into),
                    lambda: rasa_kill(cluster, args.calls, args.rate, args.into),
                    lambda: postgres_restart(cluster, args.calls, args.rate, args.into, args.postgres_down)):
            phases.append(run())
            print(phases[-1].line(), flush=True)
        print(summary(phases), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
