# seqlit: `make demo` trains the bundled JapaneseVowels GRU end to end; `make test` runs the tests.
# Both create .venv when it is missing and install the CPU torch wheel before the project, so pip
# never pulls the multi-GB CUDA build on a CPU machine.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.seqlit-installed

export WANDB_MODE ?= offline
export PYTHONUNBUFFERED := 1

.PHONY: demo demo-g2p demo-lm demo-forecast test test-all bench install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/python -m seqlit.demo --config configs/japanese_vowels_gru.yaml --seeds 0 1 2

# Small grapheme-to-phoneme model on CMUdict (~3 min), then pronunciations for examples/g2p_words.txt.
demo-g2p: $(STAMP)
	$(BIN)/seqlit fit --config configs/g2p_cmudict_small.yaml --trainer.enable_progress_bar false
	$(BIN)/seqlit predict --config configs/g2p_cmudict_small.yaml --ckpt_path last \
		--data.init_args.predict_path examples/g2p_words.txt --trainer.enable_progress_bar false

# Character language model on Python's bundled docs (~20 min on 2 CPU cores), then two samples.
demo-lm: $(STAMP)
	$(BIN)/seqlit fit --config configs/lm_pydoc_char.yaml --trainer.enable_progress_bar false
	$(BIN)/seqlit predict --config configs/lm_pydoc_char.yaml --ckpt_path last \
		--data.init_args.prompts '["The with statement", "def "]' --trainer.enable_progress_bar false

# M1 yearly forecasting (~30 s): the naive and drift baselines, then the GRU recipe (fit + test), then
# a forecast of the 6 years after each series' end.
demo-forecast: $(STAMP)
	$(BIN)/seqlit test --config configs/m1_yearly_gru.yaml --model.init_args.network naive --trainer.enable_progress_bar false
	$(BIN)/seqlit test --config configs/m1_yearly_gru.yaml --model.init_args.network drift --trainer.enable_progress_bar false
	$(BIN)/seqlit fit --config configs/m1_yearly_gru.yaml --trainer.enable_progress_bar false
	$(BIN)/seqlit predict --config configs/m1_yearly_gru.yaml --ckpt_path last --trainer.enable_progress_bar false

# The default suite plus the 2-process DDP tests (CPU, gloo), then the notebooks executed by nbmake.
test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow and not gpu"
	$(BIN)/python -m pytest -q --nbmake notebooks

# Slow and multi-process tests too (not part of CI's time budget).
test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m "not gpu"

# Performance ratios, each measured side by side in one run (~8 min on 2 CPU cores); run it on an idle
# machine. Latest figures: benchmarks/README.md.
bench: $(STAMP)
	$(BIN)/python benchmarks/padding.py
	$(BIN)/python benchmarks/kernels.py
	$(BIN)/python benchmarks/loop_overhead.py
	$(BIN)/python benchmarks/callback_overhead.py
	$(BIN)/python benchmarks/callback_overhead.py --figures

clean:
	rm -rf runs lightning_logs .pytest_cache .hypothesis
