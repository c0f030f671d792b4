#!/usr/bin/env bash
# Python package tests (issue 11): builds and installs crates/rewardanything-py exactly as
# a user does (`pip install crates/rewardanything-py`, maturin in an isolated build env)
# into a virtualenv under target/, builds ra-mock and ra, and runs the pytest suite against it.
# Usage: scripts/py-test.sh [pytest args...]   (PYTHON=python3.X picks the interpreter,
# VENV=DIR the virtualenv, default target/py-venv)
set -euo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)
venv=${VENV:-target/py-venv}
python=${PYTHON:-python3}
pip() { "$venv/bin/python" -m pip --disable-pip-version-check -q "$@"; }

if [ ! -x "$venv/bin/python" ]; then
    "$python" -m venv "$venv"
fi
pip install pytest
echo "py-test: building and installing the wheel (pip install crates/rewardanything-py)"
pip install --force-reinstall --no-deps crates/rewardanything-py
echo "py-test: wheel installed after $(( $(date +%s) - start )) s"
# ra-mock is the model server; `ra` runs the gateway the first-hour tests point a Client at.
cargo build -p ra-mock -p ra-cli --locked
RA_MOCK_BIN="$PWD/target/debug/ra-mock" RA_BIN="$PWD/target/debug/ra" "$venv/bin/python" -m pytest crates/rewardanything-py/tests -q "$@"
echo "py-test: done in $(( $(date +%s) - start )) s"
