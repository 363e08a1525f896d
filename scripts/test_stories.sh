#!/usr/bin/env bash
# Rasa test stories (tests/stories/test_*.yml) against the trained model; any wrong prediction fails.
# `rasa test core` only predicts actions, it does not call the action server, so none needs to run.
set -euo pipefail
cd "$(dirname "$0")/.."
RASA=${RASA:-.venv-rasa/bin/rasa}
MODEL=${RASA_MODEL:-models/rasa}
OUT=${STORIES_OUT:-results/core}
rm -f "$OUT/story_report.json"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
status=0
"$RASA" test core --stories tests/stories --model "$MODEL" --out "$OUT" --fail-on-prediction-errors >"$log" 2>&1 || status=$?
if [ $status -ne 0 ]; then
  tr '\r' '\n' <"$log" | grep -E "ERROR|Error|Exception|predicted" | tail -20
  echo "rasa test core failed (exit $status); wrong predictions are in $OUT/failed_test_stories.yml"
  exit $status
fi
python3 - "$OUT/story_report.json" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))["conversation_accuracy"]
print(f"test stories: {report['correct']}/{report['total']} correct")
sys.exit(0 if report["correct"] == report["total"] else 1)
PY
