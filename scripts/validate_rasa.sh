#!/usr/bin/env bash
# `rasa data validate` on the whole Rasa project. Errors always fail; warnings fail too, except two kinds
# that are expected by design, so a misspelt intent, an orphan response or a story conflict still fails:
# - the contract intents call_start / dtmf / transfer_failed / survey_no_answer have no NLU examples: the gateway sends them as
#   /intent messages, nobody speaks them;
# - responses that forms ask with (utter_ask_*), Rasa's core fallback says (utter_default) or that actions send (any "utter_..." literal in actions/*.py) are
#   "not used in any story or rule" as far as the validator can see.
set -uo pipefail
cd "$(dirname "$0")/.."
RASA=${RASA:-.venv-rasa/bin/rasa}

log=$(mktemp)
trap 'rm -f "$log"' EXIT
"$RASA" data validate --domain domain --data data --config config.yml >"$log" 2>&1
status=$?

# any "utter_..." string literal in actions/*.py: response="utter_x", or a name chosen in code (read-backs, handoffs)
used_by_code=$(grep -ohE '"utter_[a-z0-9_]+"' actions/*.py | tr -d '"' | sort -u | paste -sd'|')
expected="intent '(call_start|dtmf|transfer_failed|survey_no_answer)' is listed in the domain file, but is not found in the NLU training data"
expected="$expected|utterance 'utter_(ask_[a-z0-9_]+|default)' is not used"
[ -n "$used_by_code" ] && expected="$expected|utterance '($used_by_code)' is not used"

unexpected=$(grep -E "UserWarning|WARNING|ERROR" "$log" | grep -Ev "$expected" | grep -Ev "MovedIn20Warning|DeprecationWarning" || true)
if [ -n "$unexpected" ]; then
  echo "rasa data validate: unexpected warnings or errors:"
  echo "$unexpected" | sed -E 's/^.*(UserWarning|WARNING|ERROR):? ?//'
  exit 1
fi
if [ $status -ne 0 ]; then
  tail -20 "$log"; exit $status
fi
echo "rasa data validate: clean (only the expected contract-intent and form/action response warnings)"
