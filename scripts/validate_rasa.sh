#!/usr/bin/env bash
# `rasa data validate` on the whole project. Errors always fail. Warnings fail too, except the kinds that are
# expected by design (listed below), so a typo'd intent, an unused response or a story/rule conflict fails CI.
set -uo pipefail
cd "$(dirname "$0")/.."
RASA=${RASA:-.venv-rasa/bin/rasa}

# Expected warnings:
# - call_start / dtmf / transfer_failed have no NLU examples: the gateway sends them as /intent, they are never spoken.
# - slots filled by custom actions / form validation have no NLU mapping on purpose (the PIN must never be mapped).
# - utter_ask_* responses are used by forms, and Rasa's validator does not see form prompts as "used".
ALLOWED='intent .(call_start|dtmf|transfer_failed). (is not used|has no training examples)|utter_ask_|action_ask_|mapping|not used in any story or rule|UserWarning|More info|^\s*$'

log=$(mktemp)
trap 'rm -f "$log"' EXIT
"$RASA" data validate --domain domain --data data --config config.yml --fail-on-warnings >"$log" 2>&1
status=$?
warnings=$(grep -E "UserWarning|WARNING" "$log" | grep -Ev "$ALLOWED" || true)
errors=$(grep -E "ERROR|InvalidDomain|YamlException|contradict" "$log" || true)
if [ -n "$errors" ]; then
  echo "rasa data validate: errors"; echo "$errors"; exit 1
fi
if [ -n "$warnings" ]; then
  echo "rasa data validate: unexpected warnings"; echo "$warnings"; exit 1
fi
if [ $status -ne 0 ] && ! grep -qE "warning" "$log"; then
  cat "$log"; exit $status
fi
echo "rasa data validate: clean (errors: none, unexpected warnings: none)"
