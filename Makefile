# Two commands do all the set-up on a fresh machine: `make demo` and `make test`.
PY      ?= python3
VENV    := .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed
# torch first and pinned: a loose torch pulls a multi-GB CUDA build (see TOOLCHAIN notes).
TORCH   := torch==2.13.0
MLXTEND := mlxtend==0.25.0

.PHONY: demo test test-slow test-all bench venv clean

venv: $(STAMP)

$(STAMP): requirements.txt pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q $(TORCH)
	$(BIN)/pip install -q -r requirements.txt
	$(BIN)/pip install -q --no-deps $(MLXTEND)
	$(BIN)/pip install -q --no-deps -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/explorer search --config configs/demo.toml --out runs/demo --force

# Fast tier (the README's test command, <= 5 min on 2 cores): everything not marked `slow`.
# The slow tier is the rest; CI runs both.
test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow"

test-slow: $(STAMP)
	$(BIN)/python -m pytest -q -m slow

test-all: $(STAMP)
	$(BIN)/python -m pytest -q -m ""

bench: $(STAMP)
	$(BIN)/python tools/bench.py --out bench-out

clean:
	rm -rf $(VENV) runs bench-out
