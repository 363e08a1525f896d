#!/usr/bin/env bash
# The whole test suite, as `make test` runs it. Every step runs; the exit code is non-zero if any failed.
set -uo pipefail
cd "$(dirname "$0")/.."
failed=()
step() {
  local name=$1; shift
  echo "=== $name"
  if "$@"; then echo "--- ok: $name"; else echo "--- FAILED: $name"; failed+=("$name"); fi
}

step "rasa data validate" bash scripts/validate_rasa.sh
step "rasa test stories" bash scripts/test_stories.sh
step "nlu held-out accuracy" bash scripts/nlu_eval.sh
step "pytest (.venv-rasa: actions, dialogue, security/rasa)" .venv-rasa/bin/python -m pytest -q tests/actions tests/dialogue tests/security/rasa
step "pytest (.venv: bot, telephony, security, integration)" .venv/bin/python -m pytest -q tests --ignore=tests/actions --ignore=tests/dialogue --ignore=tests/security/rasa

if [ ${#failed[@]} -gt 0 ]; then
  echo "FAILED steps: ${failed[*]}"
  exit 1
fi
echo "all test steps passed"
