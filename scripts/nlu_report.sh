#!/usr/bin/env bash
# NLU evaluation for trainers (`make nlu-report`), written to reports/nlu/:
#   intent_report.json (per-intent precision/recall/F1), intent_confusion_matrix.png, intent_errors.json,
#   intent_histogram.png, DIETClassifier_report.json (entities), and a readable table printed here.
# The report it replaces moves to reports/nlu-previous/, and the before/after per intent and overall is printed
# (scripts/nlu_delta.py): the trainers' loop's check that a retrain helped.
#
# Default: the trained model (models/rasa, built from data/nlu/) evaluated on the held-out split tests/nlu/heldout.yml,
# i.e. the 20% of our own examples that scripts/split_nlu.py keeps out of training.
# NLU_REPORT_MODE=cv: 3-fold cross-validation over data/nlu/ instead (retrains 3 times; several minutes).
set -euo pipefail
cd "$(dirname "$0")/.."

RASA=.venv-rasa/bin/rasa
PY=.venv-rasa/bin/python
MODEL=${NLU_EVAL_MODEL:-models/rasa}
OUT=reports/nlu
PREVIOUS=reports/nlu-previous
MODE=${NLU_REPORT_MODE:-heldout}

if [ "$MODE" = heldout ] && [ ! -f "$MODEL" ] && ! ls "$MODEL"/*.tar.gz >/dev/null 2>&1; then
  echo "no trained model in $MODEL: run 'make train' first" >&2
  exit 1
fi

$PY scripts/split_nlu.py --check
# The last complete report becomes the "before" of this one (a run that failed half-way is not kept as one).
if [ -f "$OUT/intent_report.json" ]; then
  rm -rf "$PREVIOUS" && mv "$OUT" "$PREVIOUS"
fi
rm -rf "$OUT" && mkdir -p "$OUT"
# What this report measures (the model's fingerprint, the held-out file's hash): the before/after warns when the
# held-out set changed in between (labels go there too), as the two figures then use different test sets.
$PY scripts/nlu_delta.py describe "$MODE" "$MODEL" tests/nlu/heldout.yml >"$OUT/run.json"

case "$MODE" in
  heldout)
    echo "evaluating $MODEL on tests/nlu/heldout.yml (held-out 20% of data/nlu)"
    $RASA test nlu --nlu tests/nlu/heldout.yml --model "$MODEL" --successes --out "$OUT" >"$OUT/rasa.log" 2>&1 \
      || { echo "rasa test nlu failed, see $OUT/rasa.log" >&2; exit 1; }
    ;;
  cv)
    echo "3-fold cross-validation over data/nlu with config.yml"
    $RASA test nlu --nlu data/nlu --config config.yml --cross-validation --folds 3 --successes --out "$OUT" >"$OUT/rasa.log" 2>&1 \
      || { echo "rasa test nlu failed, see $OUT/rasa.log" >&2; exit 1; }
    ;;
  *)
    echo "NLU_REPORT_MODE must be heldout or cv, not '$MODE'" >&2
    exit 2
    ;;
esac

echo
echo "== intents (worst first)"
$PY scripts/nlu_metrics.py "$OUT/intent_report.json" --table --label "intents ($MODE)"
if [ -f "$OUT/DIETClassifier_report.json" ]; then
  echo
  echo "== entities"
  # DIET's amount and card-role rows read 0.0: those entities come from the extractors reported below, which
  # replace DIET's guesses, so rasa credits every hit to them.
  $PY scripts/nlu_metrics.py "$OUT/DIETClassifier_report.json" --table --omit amount,card_last4.source,card_last4.destination \
    --label "entities ($MODE; amount and card roles below)"
  echo
  echo "== amount and card entities by role (source / destination), F1 >= ${NLU_MIN_ENTITY_F1:-0.95} wanted"
  # Amounts come from dialogue/amounts.py (DIET checked against the amount grammar), which rasa reports on its own.
  $PY scripts/nlu_metrics.py "$OUT/AmountExtractor_report.json" --by-role amount \
    --min-f1 "${NLU_MIN_ENTITY_F1:-0.95}" || entity_status=$?
  # In transfers the cards and their roles come from dialogue/card_roles.py, which rasa reports on its own.
  $PY scripts/nlu_metrics.py "$OUT/CardRoleExtractor_report.json" --by-role card_last4.source,card_last4.destination \
    --min-f1 "${NLU_MIN_ENTITY_F1:-0.95}" || entity_status=$?
fi
if [ -f "$PREVIOUS/intent_report.json" ]; then
  echo
  echo "== before/after: $PREVIOUS -> $OUT"
  $PY scripts/nlu_delta.py "$PREVIOUS/intent_report.json" "$OUT/intent_report.json" \
    --runs "$PREVIOUS/run.json" "$OUT/run.json"
fi
echo
echo "written to $OUT/: intent_report.json intent_confusion_matrix.png intent_errors.json DIETClassifier_report.json"
exit "${entity_status:-0}"
