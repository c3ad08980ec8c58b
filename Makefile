# Every target installs what it needs once and skips what has not changed.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-genguard
MODELS := var/models/minilm/VERSION

.PHONY: demo test bench lint install models debian services down clean

demo: install models debian
	$(BIN)/genguard up

down:
	-$(BIN)/genguard down

test: install models debian
	$(BIN)/genguard redis
	$(BIN)/ruff check .
	$(BIN)/pytest -q -p no:cacheprovider

bench: install models debian
	$(BIN)/genguard redis
	$(BIN)/python bench/prompt_gate.py
	$(BIN)/python bench/audit.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/genguard policy lint policies/default.yaml policies/tenants/*.yaml

install: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)

# torch is pinned to the wheel that lies on this disk (see DEVELOPERS notes in the README).
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.14.1
	$(BIN)/python -m pip install -q -e '.[dev,export]'
	touch $@

models: $(MODELS)

$(MODELS): $(STAMP)
	$(BIN)/genguard models export

# Debian packages the services need, installed only when missing.
debian:
	@command -v redis-server >/dev/null || { \
		echo "installing redis-server"; \
		(apt-get update -qq && apt-get install -y -qq redis-server) >/dev/null; }

clean: down
	rm -rf var/log var/faust var/*.pid
