#!/usr/bin/env bash
# Scores a JSON Lines batch with a local RewardAnything server, start to finish:
# brings up `ra-serve`, waits until it has written its endpoints file (every replica
# ready), runs `ra score --endpoints-file … --resume`, and stops the server on exit,
# Ctrl-C or SIGTERM. Running the same command again after an interruption resumes.
#
# Usage:
#   scripts/score-batch.sh INPUT OUTPUT [ra score options…] [-- ra-serve options…]
#
# Examples:
#   scripts/score-batch.sh examples/requests.jsonl results.jsonl
#   scripts/score-batch.sh in.jsonl out.jsonl --concurrency 64 --retry-failed \
#       -- --gpus 0,1,2,3 --tensor-parallel-size 2
#   scripts/score-batch.sh in.jsonl out.jsonl -- --engine llama-cpp --model ./model.gguf
#
# Environment:
#   RA_BIN, RA_SERVE_BIN   executables to use (default: target/release/ra and
#                          target/release/ra-serve in this repository, else on PATH)
#   RA_SERVE_API_KEY       key the server demands; also given to `ra score` as
#                          RA_API_KEY unless that is set (keys never go on a command line)
#   RA_SERVE_LOG           file that receives ra-serve's and the engine's output
#                          (appended) instead of the terminal
#   RA_KEEP_SERVER=1       leave the server running once `ra score` has finished (not
#                          after an interruption), and print its URL and how to stop it
#
# Exit status: that of `ra score` (0 all judged, 1 some lines failed, 2 could not
# proceed); 2 when the server stops before it is ready; 130/143 on Ctrl-C/SIGTERM.
# Do not pass --endpoints-file to ra-serve: the script chooses it.

set -euo pipefail

usage() {
    sed -n '2,/^$/s/^# \{0,1\}//p' "$0" >&2
    exit 2
}

[[ $# -ge 2 ]] || usage
case $1 in -h | --help) usage ;; esac
input=$1
output=$2
shift 2
score_args=()
while [[ $# -gt 0 && $1 != "--" ]]; do
    score_args+=("$1")
    shift
done
[[ $# -gt 0 ]] && shift # the "--"
serve_args=("$@")

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Prints the executable for NAME: the override, the release build, else PATH.
find_bin() {
    local name=$1 override=$2
    if [[ -n $override ]]; then
        printf '%s\n' "$override"
    elif [[ -x $root/target/release/$name ]]; then
        printf '%s\n' "$root/target/release/$name"
    else
        command -v "$name" || true
    fi
}
ra_bin=$(find_bin ra "${RA_BIN:-}")
serve_bin=$(find_bin ra-serve "${RA_SERVE_BIN:-}")
if [[ -z $ra_bin ]]; then
    echo "score-batch: ra not found: run 'cargo build --release -p ra-cli' or set RA_BIN" >&2
    exit 2
fi
if [[ -z $serve_bin ]]; then
    echo "score-batch: ra-serve not found: run 'cargo build --release -p ra-serve' or set RA_SERVE_BIN" >&2
    exit 2
fi
if [[ $output == "-" ]]; then
    echo "score-batch: OUTPUT must be a file (resuming needs one)" >&2
    exit 2
fi
if [[ $input != "-" && ! -r $input ]]; then
    echo "score-batch: cannot read $input" >&2
    exit 2
fi
if [[ -n ${RA_SERVE_API_KEY:-} && -z ${RA_API_KEY:-} ]]; then
    export RA_API_KEY=$RA_SERVE_API_KEY
fi

workdir=$(mktemp -d "${TMPDIR:-/tmp}/score-batch.XXXXXX")
endpoints=$workdir/endpoints.json
server_pid=
score_pid=

# Stops `ra score` first (it leaves a resumable output), then the server; ra-serve
# itself stops its engines (SIGTERM, its --grace, then SIGKILL) before it exits.
# shellcheck disable=SC2317  # invoked by the traps below
cleanup() {
    local status=$?
    trap - EXIT INT TERM
    if [[ -n $score_pid ]] && kill -0 "$score_pid" 2>/dev/null; then
        kill -TERM "$score_pid" 2>/dev/null || true
        wait "$score_pid" 2>/dev/null || true
    fi
    if [[ -n ${RA_KEEP_SERVER:-} && $status -lt 128 && -n $server_pid ]] &&
        kill -0 "$server_pid" 2>/dev/null; then
        # Its endpoints file stays, where ra-serve keeps it up to date.
        local urls
        urls=$(python3 -c 'import json,sys; print(" ".join(json.load(open(sys.argv[1]))["endpoints"]))' \
            "$endpoints" 2>/dev/null || echo "(see $endpoints)")
        echo "score-batch: the server keeps running (ra-serve pid $server_pid) at $urls" >&2
        echo "score-batch:   its endpoints file: $endpoints (ra score --endpoints-file …)" >&2
        echo "score-batch:   stop it with: kill $server_pid" >&2
        exit "$status"
    fi
    if [[ -n $server_pid ]] && kill -0 "$server_pid" 2>/dev/null; then
        echo "score-batch: stopping ra-serve (pid $server_pid)" >&2
        kill -TERM "$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
    fi
    rm -rf "$workdir"
    exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

echo "score-batch: starting $serve_bin ${serve_args[*]:-}" >&2
# A server to keep gets a session of its own: the terminal's Ctrl-C and hang-up are no
# longer its business once this script has exited.
detach=()
[[ -n ${RA_KEEP_SERVER:-} ]] && detach=(setsid)
if [[ -n ${RA_SERVE_LOG:-} ]]; then
    echo "score-batch: server output goes to $RA_SERVE_LOG" >&2
    ${detach[@]+"${detach[@]}"} "$serve_bin" --endpoints-file "$endpoints" \
        ${serve_args[@]+"${serve_args[@]}"} >>"$RA_SERVE_LOG" 2>&1 </dev/null &
else
    ${detach[@]+"${detach[@]}"} "$serve_bin" --endpoints-file "$endpoints" \
        ${serve_args[@]+"${serve_args[@]}"} &
fi
server_pid=$!

# ra-serve writes the file (atomically) once every replica answers, and bounds the wait
# itself (--startup-timeout); here we only watch that it is still alive.
while [[ ! -s $endpoints ]]; do
    if ! kill -0 "$server_pid" 2>/dev/null; then
        status=0
        wait "$server_pid" || status=$?
        server_pid=
        if [[ -n ${RA_SERVE_LOG:-} ]]; then
            # The cause first (ra-serve's own error lines), then the log's end.
            grep -a '^ra-serve: ' "$RA_SERVE_LOG" >&2 || true
            echo "score-batch: ra-serve exited (status $status) before it was ready;" \
                "the end of $RA_SERVE_LOG:" >&2
            tail -n 20 "$RA_SERVE_LOG" >&2 || true
        else
            echo "score-batch: ra-serve exited (status $status) before it was ready" >&2
        fi
        exit 2
    fi
    sleep 0.2
done
echo "score-batch: server ready; scoring $input into $output" >&2

# In the background so that a signal to this script is handled at once (bash runs traps
# only between foreground commands), then forwarded by cleanup. `<&0` keeps stdin (for
# INPUT "-"): a background command's stdin is /dev/null otherwise.
"$ra_bin" score --input "$input" --output "$output" --endpoints-file "$endpoints" --resume \
    ${score_args[@]+"${score_args[@]}"} <&0 &
score_pid=$!
status=0
wait "$score_pid" || status=$?
score_pid=
exit "$status"
