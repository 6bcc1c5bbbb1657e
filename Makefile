# Two commands do all the set-up: `make run` and `make test`.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
# Daphne as in production: WebSockets may stay open indefinitely (kiosks idle for hours), pings
# every 20 s keep proxies from dropping idle sockets, and a client that does not answer pings for
# 30 s is closed. A handshake has 10 s; the app gets 10 s to close after a disconnect. A WebSocket
# message over 64 KiB is closed with 1009; `python -m project.serve` is daphne set to send that close
# frame instead of dropping the connection (see project/serve.py).
DAPHNE_FLAGS ?= --websocket_timeout -1 --websocket_connect_timeout 10 --ping-interval 20 --ping-timeout 30 --application-close-timeout 10 --websocket-max-message-size 65536 --websocket-max-frame-size 65536

.PHONY: run test lint format bench clean compose-test

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

# SKIP_LINT=1 runs the tests only (CI's second database run; ruff already ran once).
test: $(BIN)/.dev
ifneq ($(SKIP_LINT),1)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
endif
	DJANGO_DEBUG=1 $(BIN)/python -m pytest $(PYTEST_ARGS)

# The compose stack for real (tests/compose): two web replicas behind the proxy, through one port.
compose-test: $(BIN)/.dev
	DJANGO_DEBUG=1 $(BIN)/python -m pytest -m compose tests/compose -s -v --timeout 1800 $(PYTEST_ARGS)

# Settings for `docker compose`: a random secret key and database password, made once, never committed.
.env:
	umask 077 && printf 'COMPOSE_PROJECT_NAME=diabetes-risk\nDJANGO_SECRET_KEY=%s\nPOSTGRES_PASSWORD=%s\n' \
	  "$$($(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(50))')" \
	  "$$($(PYTHON) -c 'import secrets; print(secrets.token_urlsafe(24))')" > $@

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
