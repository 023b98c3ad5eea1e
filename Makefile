# The two commands of the README: `make demo` (the main job) and `make test` (the test suite).
# Both set up the machine first (scripts/setup.sh, a no-op when nothing changed).
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test bench doctor

setup:
	bash scripts/setup.sh

demo: setup
	$(BIN)/agentgym eval agentgym/TextWorld-CoinCollector-v0 --split test --policy random --policy oracle \
		--episodes 20 --seeds 0 1 2 --out results
	$(BIN)/agentgym eval agentgym/TextWorld-TreasureHunter-v0 --split test --policy random --policy oracle \
		--episodes 20 --seeds 0 1 2 --out results
	@echo
	@echo "Held-out evaluation (mean ± std over seeds, 95% CI half-width in brackets):"
	@$(BIN)/agentgym report results/*.json

test: setup
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python benchmarks/env_overhead.py
	$(BIN)/python benchmarks/rollout_throughput.py
	$(BIN)/python benchmarks/generation_throughput.py
	$(BIN)/python benchmarks/train_throughput.py

doctor: setup
	$(BIN)/agentgym doctor
