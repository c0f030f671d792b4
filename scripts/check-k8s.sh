#!/usr/bin/env bash
# Renders deploy/kubernetes offline and validates every object against the Kubernetes
# schemas of the two latest minor versions kubernetes-validate ships (strict), plus the
# cross-checks of scripts/check_k8s.py; then proves the check can fail: each broken
# fixture in scripts/testdata/k8s-broken/ must be rejected with the message in its
# expect.txt. Installs the pinned validator into a venv in the cache (a few seconds
# once installed).
#
# Usage: scripts/check-k8s.sh [RA_BINARY]   (with it, the ra containers' flags are
#                                            checked against `ra SUBCOMMAND --help`)
set -euo pipefail
cd "$(dirname "$0")/.."
ra=${1:-}

cache="${RA_CACHE_DIR:-$HOME/.cache/rewardanything-rs}"
venv="$cache/venv-k8s"
pins=("kubernetes-validate==1.37.0" "PyYAML==6.0.2")
mkdir -p "$cache"
exec 9>"$cache/.setup-k8s.lock"
flock 9
if ! "$venv/bin/python" -c 'import kubernetes_validate, yaml' 2>/dev/null \
    || [ "$("$venv/bin/python" -c 'import importlib.metadata as m; print(m.version("kubernetes-validate"))')" != 1.37.0 ]; then
    echo "check-k8s: installing ${pins[*]} into $venv" >&2
    "${RA_PYTHON:-python3}" -m venv "$venv"
    "$venv/bin/pip" install --quiet --disable-pip-version-check "${pins[@]}"
fi
flock -u 9
py="$venv/bin/python"

passed=0 failed=0
ra_args=()
[ -n "$ra" ] && ra_args=(--ra "$ra")

echo "== deploy/kubernetes"
if "$py" scripts/check_k8s.py deploy/kubernetes "${ra_args[@]}"; then
    passed=$((passed + 1))
else
    failed=$((failed + 1))
fi

for dir in scripts/testdata/k8s-broken/*/; do
    name=$(basename "$dir")
    [ "$name" = flags ] && [ -z "$ra" ] && continue
    expect=$(cat "$dir/expect.txt")
    set +e
    out=$("$py" scripts/check_k8s.py "$dir" "${ra_args[@]}" 2>&1)
    status=$?
    set -e
    if [ "$status" -ne 0 ] && grep -qF -- "$expect" <<<"$out"; then
        echo "ok   broken fixture $name rejected: $(grep -F -- "$expect" <<<"$out" | head -1)"
        passed=$((passed + 1))
    else
        echo "FAIL broken fixture $name: expected a failure mentioning '$expect', got status $status:"
        echo "$out"
        failed=$((failed + 1))
    fi
done
echo "check-k8s: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
