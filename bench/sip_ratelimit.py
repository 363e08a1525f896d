"""SIP rate limiter under a flood of distinct sources: CPU seconds for N new sources arriving at one instant.

The worst case for a per-source table is that no source is idle yet, so nothing may simply expire. The limiter
(telephony/sip/security.py) keeps an LRU of at most `max_sources` buckets and evicts in O(1). For comparison,
`--old` also times the table it replaced (kept here only as a reference): whenever the table was full it rebuilt
it keeping the sources seen in the last 10 s, which under a flood is every one, so each new source cost a full
copy of the table: quadratic.

    .venv/bin/python bench/sip_ratelimit.py                 # new limiter, 30,000 and 100,000 sources
    .venv/bin/python bench/sip_ratelimit.py --old 15000     # plus the old table at 15,000 (30,000: ~1 min of CPU)

Prints one line per run: `limiter sources cpu_s us_per_packet table_size`.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from telephony.sip.security import MAX_TRACKED_SOURCES, RateLimiter, TokenBucket  # noqa: E402

RATE_PER_S = 200.0  # the shipped SIP_RATE_LIMIT_PER_S


class RebuildingRateLimiter:
    """The replaced algorithm, for the comparison only: a plain dict rebuilt whenever it was full."""

    def __init__(self, rate_per_s: float) -> None:
        self.rate_per_s = rate_per_s
        self.buckets: dict[str, TokenBucket] = {}

    def allow(self, host: str, now: float) -> bool:
        bucket = self.buckets.get(host)
        if bucket is None:
            if len(self.buckets) >= MAX_TRACKED_SOURCES:
                self.buckets = {h: b for h, b in self.buckets.items() if now - b.updated < 10.0}
            burst = max(self.rate_per_s, 1.0)
            bucket = self.buckets[host] = TokenBucket(self.rate_per_s, burst, burst, now)
        return bucket.take(now)


def sources(count: int) -> list[str]:
    return [f"10.{n >> 16 & 255}.{n >> 8 & 255}.{n & 255}" for n in range(count)]


def cpu_seconds(limiter, hosts: list[str]) -> float:
    started = time.process_time()
    for host in hosts:
        limiter.allow(host, 0.0)
    return time.process_time() - started


def report(name: str, limiter, count: int) -> None:
    seconds = cpu_seconds(limiter, sources(count))
    print(f"{name:<8} sources={count:>7} cpu_s={seconds:8.3f} us_per_packet={seconds / count * 1e6:7.2f} "
          f"table_size={len(limiter.buckets)}", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sources", type=int, nargs="+", default=[30_000, 100_000])
    parser.add_argument("--old", type=int, nargs="*", default=None, metavar="SOURCES",
                        help="also time the replaced table at these source counts (quadratic: keep them small)")
    args = parser.parse_args(argv)
    for count in args.sources:
        report("lru", RateLimiter(RATE_PER_S), count)
    for count in args.old or []:
        report("rebuild", RebuildingRateLimiter(RATE_PER_S), count)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
