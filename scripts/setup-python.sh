#!/usr/bin/env bash
# A Python venv for the tests that drive `ra gateway` with the reference package's own
# client (`rewardanything` 1.0.1 from PyPI, unmodified), in a cache directory outside
# the repository.
#
# Usage:
#   eval "$(scripts/setup-python.sh)"          # exports RA_TEST_PYTHON
#
# The reference package's __init__ imports torch and transformers; only its `client`
# and `models` modules are needed, so it is installed without dependencies, beside the
# two those modules import (requests, pydantic). scripts/reference_client.py loads them
# without running __init__. Idempotent (a second run takes about a second); concurrent
# runs serialise on a lock. Only stdout carries the export line.
#
# Environment:
#   RA_CACHE_DIR   cache directory (default: $HOME/.cache/rewardanything-rs)
#   RA_PYTHON      interpreter used to create the venv (default: python3)
set -euo pipefail

REFERENCE_VERSION="1.0.1"
PINS=("rewardanything==$REFERENCE_VERSION" "requests==2.32.3" "pydantic==2.10.6")

cache="${RA_CACHE_DIR:-$HOME/.cache/rewardanything-rs}"
venv="$cache/venv-python-tests"
python="${RA_PYTHON:-python3}"
log() { echo "setup-python: $*" >&2; }

mkdir -p "$cache"
exec 9>"$cache/.setup-python.lock"
flock 9

ready() {
  [ -x "$venv/bin/python" ] && "$venv/bin/python" - "$REFERENCE_VERSION" <<'PY' >/dev/null 2>&1
import importlib.metadata as m, sys
assert m.version("rewardanything") == sys.argv[1]
import requests, pydantic  # noqa: F401
PY
}

if ! ready; then
  log "creating $venv"
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "${PINS[@]:1}" >&2
  "$venv/bin/python" -m pip install --quiet --disable-pip-version-check --no-deps "${PINS[0]}" >&2
  ready || { log "the venv at $venv does not import rewardanything $REFERENCE_VERSION"; exit 1; }
fi
echo "export RA_TEST_PYTHON=$(printf %q "$venv/bin/python")"
