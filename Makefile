# Two commands for a fresh Debian 12 machine: `make run` and `make test` (see README.md).
SHELL := /bin/bash
# Rasa would otherwise try to reach its telemetry host, which a bank network (and this one) does not allow.
export RASA_TELEMETRY_ENABLED := false
.DEFAULT_GOAL := help

# The first interpreter of the wanted version that really runs (a pyenv shim may exist but refuse).
find_python = $(shell for c in $(2) $$HOME/.pyenv/versions/$(1).*/bin/python /root/.pyenv/versions/$(1).*/bin/python; do \
  "$$c" -c 'import sys; sys.exit(sys.version_info[:2] != tuple(map(int, "$(1)".split("."))))' >/dev/null 2>&1 && { echo "$$c"; break; }; done)
ifndef PY310
PY310 := $(call find_python,3.10,python3.10)
endif
ifndef PY311
PY311 := $(call find_python,3.11,python3.11)
endif
RASA_VENV := .venv-rasa
VOICE_VENV := .venv
RASA := $(RASA_VENV)/bin/rasa
RASA_MODEL_DIR ?= models/rasa
RASA_SOURCES := config.yml $(shell find domain data -name '*.yml' 2>/dev/null) $(wildcard dialogue/jieba_dict/*.txt)

.PHONY: help deps apt run cluster test train nlu-report chat call models report bench-voice bench-asr bench-sip bench-cluster bench-kpis gate clean review label swap-model

help:
	@echo "make run    - install what is missing, train if needed, start Rasa + actions + gateway (Ctrl-C stops)"
	@echo "make test   - install what is missing and run the whole test suite"
	@echo "make train | nlu-report | chat | call WAV=file.wav | models | report | bench-voice | bench-asr | bench-sip | bench-cluster | bench-kpis"
	@echo "make gate   - the recorded-call regression gate: a corpus through the real loop against its baseline"
	@echo "make review | label KEY=… INTENT=… (or OOS=1) | swap-model - the trainers' loop (docs/TRAINERS.md)"
	@echo "make cluster - Kamailio + 2 gateways + HAProxy + 2 Rasa + 2 action servers + Redis + PostgreSQL (docs/SCALING.md)"

apt:
	@bash scripts/install_apt.sh

$(RASA_VENV)/.installed: requirements/rasa.lock
	@test -n "$(PY310)" || { echo "Python 3.10 is required for Rasa 3.6 (e.g. 'pyenv install 3.10.13' or 'apt-get install python3.10'), then: make PY310=/path/to/python3.10"; exit 1; }
	@test -x $(RASA_VENV)/bin/python || $(PY310) -m venv $(RASA_VENV)
	$(RASA_VENV)/bin/pip install -q --upgrade "pip<25"
	$(RASA_VENV)/bin/pip install -q --no-deps -r requirements/rasa.lock
	@touch $@

$(VOICE_VENV)/.installed: requirements/voice.lock
	@test -n "$(PY311)" || { echo "Python 3.11 is required (e.g. 'pyenv install 3.11.7'), then: make PY311=/path/to/python3.11"; exit 1; }
	@test -x $(VOICE_VENV)/bin/python || $(PY311) -m venv $(VOICE_VENV)
	$(VOICE_VENV)/bin/pip install -q --upgrade "pip<25"
	$(VOICE_VENV)/bin/pip install -q --no-deps -r requirements/voice.lock
	@touch $@

deps: apt $(RASA_VENV)/.installed $(VOICE_VENV)/.installed

# Retrain only when the Rasa project changed.
$(RASA_MODEL_DIR)/.trained: $(RASA_SOURCES) | $(RASA_VENV)/.installed
	@mkdir -p $(RASA_MODEL_DIR)
	$(RASA) train --config config.yml --domain domain --data data --out $(RASA_MODEL_DIR) --fixed-model-name ivr
	@touch $@

train: deps $(RASA_MODEL_DIR)/.trained

nlu-report: train
	@bash scripts/nlu_report.sh

run: train
	$(VOICE_VENV)/bin/python scripts/stack.py

cluster: train
	$(VOICE_VENV)/bin/python -m scripts.cluster

test: train
	@bash scripts/test_all.sh

chat: deps
	$(VOICE_VENV)/bin/python -m bot.chat

call: deps
	$(VOICE_VENV)/bin/python -m bot.call_cli $(WAV)

report: deps
	$(VOICE_VENV)/bin/python -m bot.service_report $(REPORT_ARGS)

# The trainers' loop (docs/TRAINERS.md, "Learning from real calls"): review, label, `make train`, swap, nlu-report.
review: deps
	$(VOICE_VENV)/bin/python -m bot.nlu_review $(REVIEW_ARGS)

label: deps
	@test -n "$(KEY)" || { echo "usage: make label KEY=<key from make review> INTENT=<intent> | OOS=1 [BY=name]"; exit 2; }
	$(VOICE_VENV)/bin/python -m bot.nlu_review label "$(KEY)" $(if $(OOS),--out-of-scope,"$(INTENT)") $(if $(BY),--by "$(BY)")

swap-model: deps
	$(VOICE_VENV)/bin/python scripts/swap_model.py $(SWAP_ARGS)

models: deps
	$(VOICE_VENV)/bin/python -m bot.models download

bench-voice: train
	$(VOICE_VENV)/bin/python bench/voice_latency.py $(BENCH_ARGS)

bench-asr: deps
	$(VOICE_VENV)/bin/python bench/asr_curve.py $(BENCH_ARGS)

gate: train
	$(VOICE_VENV)/bin/python bench/gate.py $(GATE_ARGS)

bench-cluster: train
	$(VOICE_VENV)/bin/python bench/cluster_failover.py $(BENCH_ARGS)

bench-sip: deps
	@bash bench/sip_load.sh

bench-kpis: deps
	$(VOICE_VENV)/bin/python bench/kpis_load.py $(BENCH_ARGS)

clean:
	rm -rf $(RASA_MODEL_DIR) var results reports
