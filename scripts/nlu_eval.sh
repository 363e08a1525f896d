#!/usr/bin/env bash
# NLU accuracy on our own held-out split (tests/nlu/heldout.yml), as `make test` runs it.
# Prints one summary line; exits non-zero below NLU_MIN_ACCURACY. Then, for information only, the accuracy on the
# external evaluation set ../shared/eval/nlu_external.yml when it exists (never trained on; see docs/TRAINERS.md).
set -euo pipefail
cd "$(dirname "$0")/.."

RASA=.venv-rasa/bin/rasa
PY=.venv-rasa/bin/python
MODEL=${NLU_EVAL_MODEL:-models/rasa}
MIN_ACCURACY=${NLU_MIN_ACCURACY:-0.92}
MIN_CARD_ROLE_F1=${NLU_MIN_CARD_ROLE_F1:-0.95}
MIN_AMOUNT_F1=${NLU_MIN_AMOUNT_F1:-0.95}
EXTERNAL=../shared/eval/nlu_external.yml

if [ ! -f "$MODEL" ] && ! ls "$MODEL"/*.tar.gz >/dev/null 2>&1; then
  echo "no trained model in $MODEL: run 'make train' first" >&2
  exit 1
fi

$PY scripts/split_nlu.py --check

evaluate() {  # evaluate <nlu file> <output dir>
  rm -rf "$2"
  if ! $RASA test nlu --nlu "$1" --model "$MODEL" --out "$2" >"$2.log" 2>&1; then
    echo "rasa test nlu failed on $1, see $2.log" >&2
    return 1
  fi
}

mkdir -p results
evaluate tests/nlu/heldout.yml results/nlu_heldout
status=0
$PY scripts/nlu_metrics.py results/nlu_heldout/intent_report.json --label heldout --min-accuracy "$MIN_ACCURACY" || status=$?
# Money must not go to the wrong card: the card roles of a transfer (dialogue/card_roles.py) gate like the intents.
$PY scripts/nlu_metrics.py results/nlu_heldout/CardRoleExtractor_report.json \
  --by-role card_last4.source,card_last4.destination --min-f1 "$MIN_CARD_ROLE_F1" || status=$?
# Amounts (dialogue/amounts.py: DIET checked against the amount grammar), reported by rasa on their own, gate too.
$PY scripts/nlu_metrics.py results/nlu_heldout/AmountExtractor_report.json --by-role amount \
  --min-f1 "$MIN_AMOUNT_F1" || status=$?

# Informational only: harder FAQ-style text written by strangers; it never fails the step.
if [ -f "$EXTERNAL" ]; then
  if evaluate "$EXTERNAL" results/nlu_external; then
    $PY scripts/nlu_metrics.py results/nlu_external/intent_report.json --label "external (informational)" || true
  fi
fi
exit $status
