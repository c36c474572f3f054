# Easel: `make run` serves the embedded default model on :8000; `make test` runs the whole suite.
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The CPU build of torch, installed before anything that depends on it (a plain `torch`
# requirement resolved by pip alone pulls a multi-GB CUDA build). GPU hosts use the Docker image.
TORCH ?= torch==2.13.0
PORT ?= 8000
WORKERS ?= 1
STAMP := $(VENV)/.easel-installed

.PHONY: run test lint setup system-deps test-deps clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q "$(TORCH)"
	$(BIN)/python -m pip install -q -e '.[worker,dev]'
	touch $(STAMP)

setup: $(STAMP) system-deps

# Redis: `easel up` starts a private one (AOF on) from this binary unless EASEL_REDIS_URL is set.
system-deps:
	@command -v redis-server >/dev/null || scripts/apt-install.sh redis-server

# Headless Chromium for the playground's browser tests.
test-deps: system-deps
	@command -v chromium >/dev/null || scripts/apt-install.sh chromium

run: setup
	HF_HUB_OFFLINE=1 $(BIN)/easel up --port $(PORT) --workers $(WORKERS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/mypy core service workers models cli

test: setup test-deps lint
	HF_HUB_OFFLINE=1 $(BIN)/python -m pytest -q

clean:
	rm -rf .easel .pytest_cache .mypy_cache .ruff_cache
