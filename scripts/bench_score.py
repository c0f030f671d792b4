#!/usr/bin/env python3
"""Benchmark `ra score` against the standalone `ra-mock` (run by hand, not in CI).

Measures, for the `ra score` process only (the mock is a separate process):
client CPU per judgment (user+sys / judgments), judgments/s vs the mock's capacity,
and peak RSS. Requests have 4 responses of ~500 characters; answers are ~2 KB.

    cargo build --release -p ra-cli -p ra-mock
    python3 scripts/bench_score.py                        # both scenarios, 3 runs each
    python3 scripts/bench_score.py --lines 100000 --latency-ms 0 --runs 1
    python3 scripts/bench_score.py --steady --lines 12800 --latency-ms 200 --runs 3

`--steady` also runs twice as many lines against the same mock, alternating, and
prints the marginal rate (extra lines / extra wall time): the throughput once running,
without the fixed start-up and last-round costs that a 10 s run includes.
"""
import argparse
import json
import os
import random
import resource
import subprocess
import statistics
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.path.join(ROOT, "target", "release")
# RA_BIN compares another build of `ra` (e.g. an older commit's) against the same mock.
RA = os.environ.get("RA_BIN", os.path.join(TARGET, "ra"))


def write_input(path, lines):
    rng = random.Random(42)
    words = ("the model answers with care and cites sources where it can while "
             "staying concise clear correct kind and safe for every user").split()
    with open(path, "w") as f:
        for i in range(lines):
            responses = {}
            for name in ("alpha", "beta", "gamma", "delta"):
                text = " ".join(rng.choice(words) for _ in range(90))[:500]
                responses[name] = text
            f.write(json.dumps({"id": i, "principle": "Prefer concise, correct answers.",
                                "prompt": f"Question {i}: explain hash maps briefly.",
                                "responses": responses}) + "\n")


def start_mock(latency_ms, capacity):
    args = [os.path.join(TARGET, "ra-mock"), "--port", "0", "--latency-ms", str(latency_ms),
            "--think-bytes", "1800", "--exit-on-stdin-eof"]
    if capacity:
        args += ["--capacity", str(capacity)]
    mock = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    line = mock.stdout.readline()
    url = line.strip().split()[-1]
    return mock, url


def run_once(input_path, url, concurrency, lines):
    out = tempfile.NamedTemporaryFile(suffix=".jsonl", delete=False).name
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    proc = subprocess.run([RA, "score", "--input", input_path,
                           "--output", out, "--endpoint", url, "--concurrency", str(concurrency),
                           "--quiet", "--max-retries", "0"], capture_output=True, text=True)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        sys.exit(f"ra score failed ({proc.returncode}): {proc.stderr}")
    with open(out) as f:
        n = sum(1 for _ in f)
    os.unlink(out)
    assert n == lines, (n, lines)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    # ru_maxrss of RUSAGE_CHILDREN is the largest child so far (KiB on Linux).
    return {"wall": wall, "rate": lines / wall, "cpu_us": cpu / lines * 1e6,
            "maxrss_mb": after.ru_maxrss / 1024}


def scenario(name, lines, latency_ms, capacity, concurrency, runs):
    with tempfile.TemporaryDirectory() as d:
        input_path = os.path.join(d, "in.jsonl")
        write_input(input_path, lines)
        mock, url = start_mock(latency_ms, capacity)
        try:
            results = [run_once(input_path, url, concurrency, lines) for _ in range(runs)]
        finally:
            mock.stdin.close()
            mock.wait(timeout=10)
    med = {k: statistics.median(r[k] for r in results) for k in results[0]}
    cap = f", {100 * med['rate'] / (capacity * 1000 / latency_ms):.1f}% of {capacity * 1000 / latency_ms:.0f}/s capacity" if latency_ms else ""
    print(f"{name}: {lines} lines x {runs} runs (median): {med['rate']:.0f} judgments/s{cap}, "
          f"client CPU {med['cpu_us']:.1f} us/judgment, peak RSS {med['maxrss_mb']:.1f} MB, wall {med['wall']:.1f} s")


def steady(lines, latency_ms, capacity, concurrency, runs):
    with tempfile.TemporaryDirectory() as d:
        short, long = os.path.join(d, "short.jsonl"), os.path.join(d, "long.jsonl")
        write_input(short, lines)
        write_input(long, 2 * lines)
        mock, url = start_mock(latency_ms, capacity)
        try:
            pairs = [(run_once(short, url, concurrency, lines),
                      run_once(long, url, concurrency, 2 * lines)) for _ in range(runs)]
        finally:
            mock.stdin.close()
            mock.wait(timeout=10)
    nominal = capacity * 1000 / latency_ms
    overall = statistics.median(p[1]["rate"] for p in pairs)
    marginal = statistics.median(lines / (p[1]["wall"] - p[0]["wall"]) for p in pairs)
    cpu = statistics.median(p[1]["cpu_us"] for p in pairs)
    print(f"steady: {lines} and {2 * lines} lines x {runs} runs (median): overall "
          f"{overall:.0f} judgments/s ({100 * overall / nominal:.1f}% of {nominal:.0f}/s), "
          f"marginal {marginal:.0f} judgments/s ({100 * marginal / nominal:.1f}%), "
          f"client CPU {cpu:.1f} us/judgment")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--lines", type=int)
    p.add_argument("--latency-ms", type=int)
    p.add_argument("--capacity", type=int, default=256)
    p.add_argument("--concurrency", type=int, default=256)
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--steady", action="store_true")
    a = p.parse_args()
    if a.steady:
        steady(a.lines or 12800, a.latency_ms or 200, a.capacity, a.concurrency, a.runs)
        return
    if a.lines is not None and a.latency_ms is not None:
        scenario("custom", a.lines, a.latency_ms, a.capacity if a.latency_ms else 0, a.concurrency, a.runs)
        return
    scenario("instant mock", 20000, 0, 0, a.concurrency, a.runs)
    scenario("200 ms mock, capacity 256", 12800, 200, 256, a.concurrency, a.runs)


if __name__ == "__main__":
    main()
