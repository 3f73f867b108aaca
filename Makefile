# Everything a newcomer needs: `make demo` (install + run the main job on sample media) and
# `make test` (install + the whole test suite). No system packages: ffmpeg comes from the
# imageio-ffmpeg wheel.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
export DAGSTER_HOME ?= $(CURDIR)/.dagster
export MEDIA_ASSETS_DATA_ROOT ?= $(CURDIR)/data

.PHONY: install system-deps demo test test-fast ui bench clean

$(VENV)/.installed: pyproject.toml deploy/install.sh
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	deploy/install.sh $(PY) -e '.[test]'
	touch $@

install: $(VENV)/.installed
	mkdir -p $(DAGSTER_HOME)
	cp -u dagster.yaml $(DAGSTER_HOME)/dagster.yaml

demo: install system-deps
	$(VENV)/bin/media-assets demo

# Debian packages: espeak-ng synthesizes the speech of the demo and of the cheap audio tests;
# pocketsphinx-testdata ships real read speech with reference transcripts (LibriVox, CMU);
# postgresql: the production instance's storage, started by the tests on 127.0.0.1;
# chromium: the browser Playwright drives to check that the UI shows the media
SPEECH_DATA := /usr/share/pocketsphinx/test/data/librivox/transcription
system-deps:
	@missing=""; command -v espeak-ng >/dev/null || missing="espeak-ng"; \
	test -f $(SPEECH_DATA) || missing="$$missing pocketsphinx-testdata"; \
	ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing="$$missing postgresql"; \
	command -v chromium >/dev/null || missing="$$missing chromium"; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq $$missing; \
	  else sudo apt-get update -qq && sudo apt-get install -y -qq $$missing; fi; fi

test: install system-deps
	$(PY) -m pytest -n 2 -p no:logging media_assets_tests

# the fast tier: everything but the end-to-end tests that start the daemon and kill processes
test-fast: install system-deps
	$(PY) -m pytest -n 2 -p no:logging -m "not slow" media_assets_tests

# run from DAGSTER_HOME, where its dagster.yaml is: `dagster dev` warns about a dagster.yaml in
# the working folder that is not DAGSTER_HOME (the project's, copied there by install)
ui: install
	cd $(DAGSTER_HOME) && $(CURDIR)/$(VENV)/bin/dagster dev -w $(CURDIR)/workspace.yaml -h 127.0.0.1 -p 3000

bench: install system-deps
	$(PY) -m pip install -q -e '.[test,bench]'
	$(PY) benchmarks/video_pipeline.py
	$(PY) benchmarks/label_correction.py
	$(PY) benchmarks/keyframes_quality.py
	$(PY) benchmarks/keyframes_speed.py
	$(PY) benchmarks/asr.py
	$(PY) benchmarks/sensors.py --notifications 10000

clean:
	rm -rf $(VENV) .dagster data
