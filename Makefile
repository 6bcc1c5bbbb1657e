# Two commands do all the set-up: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
# Test processes: most of the suite waits on daphne, Redis and Chromium processes rather than
# computing, so four workers share two cores well; each test file stays on one worker. Files are
# handed out in the order tests/conftest.py collects them (those with slow tests first), not
# xdist's own (most tests first), so that no long file starts last.
# One OpenMP thread per process: four workers each spinning two OpenMP threads (scikit-learn's
# gradient boosting) on two cores slow training down many times over.
TEST_WORKERS ?= 4
# `python -m project.serve` is daphne with the production options as its defaults (PRODUCTION_OPTIONS
# in project/serve.py: WebSockets open indefinitely, pings every 20 s and 30 s to answer them, 10 s
# for a handshake and for the app to close, 64 KiB messages) and its WebSocket protocol changes.
# DAPHNE_FLAGS adds or overrides daphne flags, e.g. `make run DAPHNE_FLAGS="--ping-interval 5"`.
DAPHNE_FLAGS ?=

.PHONY: run run-host-check test lint format bench clean compose-test load-test

$(BIN)/.runtime: requirements.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements.txt
	touch $@

$(BIN)/.dev: requirements.txt requirements-dev.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -r requirements-dev.txt
	touch $(BIN)/.runtime $@

# DEBUG pages show settings and tracebacks: with DEBUG on, `make run` serves loopback only unless
# ALLOW_REMOTE_DEBUG=1 says otherwise (README: "Access and roles").
run-host-check:
	@if [ "$${DJANGO_DEBUG:-1}" != "0" ] && [ "$${ALLOW_REMOTE_DEBUG:-0}" != "1" ]; then \
	  case "$(HOST)" in \
	    127.*|localhost|::1|'[::1]') ;; \
	    *) echo "make run: refusing HOST=$(HOST) with DJANGO_DEBUG on: debug pages would be served to other machines." >&2; \
	       echo "Use HOST=127.0.0.1, or DJANGO_DEBUG=0 with a DJANGO_SECRET_KEY, or ALLOW_REMOTE_DEBUG=1 if you really mean it." >&2; \
	       exit 2;; \
	  esac; \
	fi

run: run-host-check $(BIN)/.runtime
	DJANGO_DEBUG=$${DJANGO_DEBUG:-1} $(BIN)/python manage.py migrate --no-input -v0
	DJANGO_DEBUG=$${DJANGO_DEBUG:-1} $(BIN)/python manage.py ensure_model
	DJANGO_DEBUG=$${DJANGO_DEBUG:-1} $(BIN)/python -m project.serve -b $(HOST) -p $(PORT) $(DAPHNE_FLAGS) asgi:application

# `make lint` first, then the tests; SKIP_LINT=1 runs the tests only (CI's second database run:
# ruff and mypy already ran once).
test: $(BIN)/.dev
ifneq ($(SKIP_LINT),1)
	@$(MAKE) --no-print-directory lint
endif
	OMP_NUM_THREADS=1 DJANGO_DEBUG=1 $(BIN)/python -m pytest -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder $(PYTEST_ARGS)

# Attacks beside real users, one test at a time on an otherwise quiet machine (tests marked load:
# tests/security/test_kiosk_attacks.py, docs/kiosk.md).
load-test: $(BIN)/.dev
	OMP_NUM_THREADS=1 DJANGO_DEBUG=1 $(BIN)/python -m pytest -m load -v --timeout 600 $(PYTEST_ARGS)

# The compose stack for real (tests/compose): two web replicas behind the proxy, through one port.
compose-test: $(BIN)/.dev
	DJANGO_DEBUG=1 $(BIN)/python -m pytest -m compose tests/compose -s -v --timeout 1800 $(PYTEST_ARGS)

# Settings for `docker compose`: a random secret key and database password, made once, never committed.
.env:
	umask 077 && printf 'COMPOSE_PROJECT_NAME=diabetes-risk\nDJANGO_SECRET_KEY=%s\nPOSTGRES_PASSWORD=%s\n' \
	  "$$($(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(50))')" \
	  "$$($(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(24))')" > $@

# mypy's Django plugin loads project.settings, which needs DJANGO_DEBUG (or a secret key) to import;
# its cache (.mypy_cache) makes a run after a small change take seconds (README: "Tests").
lint: $(BIN)/.dev
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	DJANGO_DEBUG=1 $(BIN)/mypy

format: $(BIN)/.dev
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

bench: $(BIN)/.dev
	DJANGO_DEBUG=1 $(BIN)/python -m bench

clean:
	rm -rf $(VENV) staticfiles .pytest_cache .ruff_cache .mypy_cache
