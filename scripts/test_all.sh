#!/usr/bin/env bash
# The whole test suite, as `make test` runs it. Every step runs; the exit code is non-zero if any failed.
#
# Two lanes run side by side, because the .venv suite spends much of its time waiting on real-time audio and on
# servers starting, and 2 cores sit half idle meanwhile:
# - the Rasa lane (.venv-rasa: validate, test stories, NLU held-out, its pytest) at a lower CPU priority (nice), so
#   the .venv suite's real-time tests keep the cores they need;
# - the .venv lane (gateway, telephony, security, integration).
# The lanes share nothing but the trained model, which both only read. The .venv lane prints as it goes; the Rasa
# lane's output is printed whole after it, so a log reads as if they had run one after the other.
set -uo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
failed_file="$work/failed"
: >"$failed_file"

step() {
  local name=$1; shift
  echo "=== $name"
  local started=$SECONDS
  if "$@"; then echo "--- ok: $name ($((SECONDS - started)) s)"; else echo "--- FAILED: $name ($((SECONDS - started)) s)"; echo "$name" >>"$failed_file"; fi
}

rasa_lane() {
  renice -n 10 -p "$BASHPID" >/dev/null 2>&1 || true  # the steps inherit it
  step "rasa data validate" bash scripts/validate_rasa.sh
  step "rasa test stories" bash scripts/test_stories.sh
  step "nlu held-out accuracy" bash scripts/nlu_eval.sh
  step "pytest (.venv-rasa: actions, dialogue, security/rasa)" .venv-rasa/bin/python -m pytest -q tests/actions tests/dialogue tests/security/rasa
}

rasa_lane >"$work/rasa-lane.log" 2>&1 &
rasa_lane_pid=$!

step "pytest (.venv: bot, telephony, security, integration)" .venv/bin/python -m pytest -q --durations=30 tests --ignore=tests/actions --ignore=tests/dialogue --ignore=tests/security/rasa
wait "$rasa_lane_pid"

cat "$work/rasa-lane.log"
if [ -s "$failed_file" ]; then
  echo "FAILED steps: $(paste -sd, "$failed_file")"
  exit 1
fi
echo "all test steps passed"
