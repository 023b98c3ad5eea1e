# The two commands of the README: `make demo` (the main job) and `make test` (the test suite).
# Both set up the machine first (scripts/setup.sh, a no-op when nothing changed).
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: setup demo test bench doctor

setup:
	bash scripts/setup.sh

demo: setup
	$(BIN)/agentgym train configs/demo-grpo-coin-level3.yaml
	@echo "Run folder: runs/demo (report.md, learning_curves.png, metrics.jsonl, final/ adapter)"

test: setup
	$(BIN)/lint-imports
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python benchmarks/env_overhead.py
	$(BIN)/python benchmarks/rollout_throughput.py
	$(BIN)/python benchmarks/generation_throughput.py
	$(BIN)/python benchmarks/train_throughput.py
	$(BIN)/python benchmarks/jvm_env_speed.py
	$(BIN)/python benchmarks/search_retrieval.py
	$(BIN)/python benchmarks/gui_render.py
	$(BIN)/python benchmarks/gui_rc_voting.py
	$(BIN)/python benchmarks/web_step.py
	$(BIN)/python benchmarks/alfworld_speed.py

doctor: setup
	$(BIN)/agentgym doctor
