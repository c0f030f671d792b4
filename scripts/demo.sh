#!/usr/bin/env bash
# The main job on a fresh machine, CPU only: install a real llama.cpp server and a small
# GGUF model (cached in ~/.cache/rewardanything-rs, checked by sha256), build `ra` and
# `ra-serve`, let ra-serve launch and supervise the server, score examples/requests.jsonl
# into results.jsonl with `ra score`, and stop the server.
#
# Usage: scripts/demo.sh [INPUT [OUTPUT]]     (default: examples/requests.jsonl results.jsonl)
#
# The model (Qwen2.5-Coder-0.5B) is a stand-in: a per-request GBNF grammar
# (`--constrain gbnf`) makes it answer in RewardAnything's exact format, but its scores
# mean little. For real judgments serve a RewardAnything GGUF (`RA_DEMO_GGUF=/path.gguf`)
# or point `ra score` at a vLLM server (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
input=${1:-examples/requests.jsonl}
output=${2:-results.jsonl}

eval "$(scripts/setup-llama.sh)"
export RA_LLAMA_SERVER_BIN
if [[ -n ${RA_DEMO_GGUF:-} ]]; then
    # A real RewardAnything GGUF thinks freely and needs no grammar.
    model=$RA_DEMO_GGUF
    score_args=(--max-tokens 4096)
else
    model=$RA_TEST_GGUF
    score_args=(--constrain gbnf --max-tokens 256)
fi

echo "demo: building ra and ra-serve (release)" >&2
cargo build --release --locked -p ra-cli -p ra-serve >&2

threads=$(nproc)
exec scripts/score-batch.sh "$input" "$output" \
    "${score_args[@]}" --concurrency 2 \
    -- --engine llama-cpp --model "$model" --max-model-len 4096 --parallel 2 --threads "$threads"
