#!/usr/bin/env bash
# Python package tests (issue 11): builds and installs crates/rewardanything-py exactly as
# a user does (`pip install crates/rewardanything-py`, maturin in an isolated build env)
# into a virtualenv under target/, checks its stubs with mypy.stubtest, builds ra-mock and
# ra, and runs the pytest suite against them.
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
# ray[data]: rewardanything_rs.ray's tests run a two-node local Ray cluster (ray.cluster_utils).
pip install pytest mypy "ray[data]==2.60.0"
echo "py-test: building and installing the wheel (pip install crates/rewardanything-py)"
pip install --force-reinstall --no-deps crates/rewardanything-py
echo "py-test: wheel installed after $(( $(date +%s) - start )) s"
# The stubs (_native.pyi) against the installed native module: a missing, extra or
# differently-signed name fails here.
echo "py-test: mypy.stubtest rewardanything_rs._native"
"$venv/bin/python" -m mypy.stubtest rewardanything_rs._native
# ra-mock is the model server; `ra` runs the gateway the first-hour tests point a Client at.
cargo build -p ra-mock -p ra-cli --locked
RA_MOCK_BIN="$PWD/target/debug/ra-mock" RA_BIN="$PWD/target/debug/ra" "$venv/bin/python" -m pytest crates/rewardanything-py/tests -q "$@"
echo "py-test: done in $(( $(date +%s) - start )) s"
