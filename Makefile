# Two commands do all the set-up: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
# `python -m project.serve` is daphne with the production options as its defaults (PRODUCTION_OPTIONS
# in project/serve.py: WebSockets open indefinitely, pings every 20 s and 30 s to answer them, 10 s
# for a handshake and for the app to close, 64 KiB messages) and its WebSocket protocol changes.
# DAPHNE_FLAGS adds or overrides daphne flags, e.g. `make run DAPHNE_FLAGS="--ping-interval 5"`.
DAPHNE_FLAGS ?=

.PHONY: run test lint format bench clean

$(BIN)/.runtime: requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.txt
	touch $@

$(BIN)/.dev: requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements-dev.txt
	touch $(BIN)/.runtime $@

run: $(BIN)/.runtime
	DJANGO_DEBUG=$${DJANGO_DEBUG:-1} $(BIN)/python manage.py migrate --no-input -v0
	DJANGO_DEBUG=$${DJANGO_DEBUG:-1} $(BIN)/python manage.py ensure_model
	DJANGO_DEBUG=$${DJANGO_DEBUG:-1} $(BIN)/python -m project.serve -b $(HOST) -p $(PORT) $(DAPHNE_FLAGS) asgi:application

test: $(BIN)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	DJANGO_DEBUG=1 $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: $(BIN)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(BIN)/.dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(BIN)/.dev
	DJANGO_DEBUG=1 $(BIN)/python -m bench

clean:
	rm -rf $(VENV) staticfiles .pytest_cache .ruff_cache
