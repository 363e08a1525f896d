#!/usr/bin/env bash
# `make bench-sip`: sipp load against the SIP door (SIP + RTP + media-only echo bot) on 127.0.0.1.
# Prints per-step figures; the last line reads `max_calls=N setup_cps=M`. Extra arguments go to
# bench/sip_load.py, e.g. `bash bench/sip_load.sh --calls 50 100 --rates 50`.
set -euo pipefail
cd "$(dirname "$0")/.."
exec .venv/bin/python -W ignore bench/sip_load.py "$@"
