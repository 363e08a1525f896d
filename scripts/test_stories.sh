#!/usr/bin/env bash
# Rasa test stories (tests/stories/test_*.yml) against the trained model; any wrong prediction fails.
# `rasa test core` only predicts actions, it does not call the action server, so none needs to run.
set -euo pipefail
cd "$(dirname "$0")/.."
RASA=${RASA:-.venv-rasa/bin/rasa}
MODEL=${RASA_MODEL:-models/rasa}
OUT=${STORIES_OUT:-results/core}
"$RASA" test core --stories tests/stories --model "$MODEL" --out "$OUT" --fail-on-prediction-errors 2>&1 \
  | tr '\r' '\n' | grep -Ev "Processed|UserWarning|More info|^\s*$|sqlalchemy|declarative_base" | tail -5
python3 - "$OUT/story_report.json" <<'PY'
import json, sys
report = json.load(open(sys.argv[1]))["conversation_accuracy"]
print(f"test stories: {report['correct']}/{report['total']} correct")
PY
