# Everything a newcomer needs: `make demo` (install + run the main job on sample media) and
# `make test` (install + the whole test suite). No system packages: ffmpeg comes from the
# imageio-ffmpeg wheel.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export DAGSTER_HOME ?= $(CURDIR)/.dagster
export MEDIA_ASSETS_DATA_ROOT ?= $(CURDIR)/data

.PHONY: install runtime demo-deps system-deps demo test test-fast ui bench clean

$(VENV)/.installed: pyproject.toml deploy/install.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	deploy/install.sh $(PY) -e '.[test]'
	touch $@

# the container image's environment, built the image's way: deploy/install.sh (what the
# Dockerfile runs) into a venv of its own, runtime dependencies only, the package installed
# (not editable), the models in its own cache; refreshed when the package changes (then pip
# reinstalls only the package). test_install_script checks it.
RUNTIME := .venv-runtime
$(RUNTIME)/.installed: pyproject.toml deploy/install.sh $(shell find media_assets -type f -not -path '*/__pycache__/*')
	test -x $(RUNTIME)/bin/python || $(PYTHON) -m venv $(RUNTIME)
	XDG_CACHE_HOME=$(CURDIR)/$(RUNTIME)/cache deploy/install.sh $(RUNTIME)/bin/python
	touch $@

runtime: $(RUNTIME)/.installed

install: $(VENV)/.installed
	mkdir -p $(DAGSTER_HOME)
	cp -u media_assets/config/dagster.yaml $(DAGSTER_HOME)/dagster.yaml

demo: install demo-deps
	$(VENV)/bin/media-assets demo

# Debian packages, installed only when missing (apt-get as root, else sudo):
#   the demo: espeak-ng, the synthetic voice of its sample speech
#   the tests, besides: pocketsphinx-testdata (real read speech with reference transcripts:
#   LibriVox, CMU), postgresql (the production instance's storage, started by the tests on
#   127.0.0.1), chromium (the browser Playwright drives through the UI), docker-compose (reads
#   docker-compose.yaml as Compose does; no Docker engine needed)
SPEECH_DATA := /usr/share/pocketsphinx/test/data/librivox/transcription
APT_INSTALL = if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq $$missing; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq $$missing; fi; fi
demo-deps:
	@missing=""; command -v espeak-ng >/dev/null || missing="espeak-ng"; $(APT_INSTALL)

system-deps: demo-deps
	@missing=""; test -f $(SPEECH_DATA) || missing="$$missing pocketsphinx-testdata"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	command -v docker-compose >/dev/null || missing="$$missing docker-compose"; \
	$(APT_INSTALL)

# three xdist workers on the two cores: most end-to-end tests wait (sensor ticks, run monitoring,
# restarts) rather than compute, and the long ones start first, spread over the workers
# (conftest.pytest_collection_modifyitems). Measured locally: 712 s with two workers, 599 s with
# three. Four overloaded the machine (648 s and a timing failure).
test: install runtime system-deps
	$(PY) -m pytest -n 3 --dist worksteal -p no:logging --durations=15 media_assets_tests

# the fast tier: everything but the end-to-end tests that start the daemon and kill processes
test-fast: install system-deps
	$(PY) -m pytest -n 2 --dist worksteal -p no:logging -m "not slow" media_assets_tests

# `dg dev` (Dagster's local webserver and daemon; `dagster dev` is superseded by it), run from
# DAGSTER_HOME, where its dagster.yaml is: Dagster warns about a dagster.yaml in the working
# folder that is not DAGSTER_HOME (the project's, copied there by install)
UI_PORT ?= 3000
ui: install
	cd $(DAGSTER_HOME) && $(CURDIR)/$(VENV)/bin/dg dev -w $(CURDIR)/media_assets/config/workspace.yaml -h 127.0.0.1 -p $(UI_PORT)

bench: install system-deps
	$(PY) -m pip install -q -e '.[test,bench]'
	$(PY) benchmarks/video_pipeline.py
	$(PY) benchmarks/label_correction.py
	$(PY) benchmarks/keyframes_quality.py
	$(PY) benchmarks/keyframes_speed.py
	$(PY) benchmarks/asr.py
	$(PY) benchmarks/demo_speech.py
	$(PY) benchmarks/sensors.py --notifications 10000
	$(PY) benchmarks/dagster_events.py
	$(PY) benchmarks/vector_search.py
	$(PY) benchmarks/frame_repeats.py

clean:
	rm -rf $(VENV) .dagster data
