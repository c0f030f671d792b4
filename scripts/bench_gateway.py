#!/usr/bin/env python3
"""Benchmark `ra gateway` through the reference package's own client (run by hand, not in CI).

One `rewardanything.Client.judge_batch` of N requests (default 2,560) against the gateway in
front of `ra-mock` with 256 slots x 200 ms (1,280 judgments/s), beside the same requests
scored directly by `ra score`. Prints judgments/s as a share of the mock's capacity, and the
gateway's peak RSS (VmHWM). Requests have 4 responses of ~500 characters; answers ~2 KB.

    cargo build --release -p ra-cli -p ra-mock
    eval "$(scripts/setup-python.sh)"
    $RA_TEST_PYTHON scripts/bench_gateway.py                 # 3 runs each, medians
    $RA_TEST_PYTHON scripts/bench_gateway.py --batch 2560 --runs 5
"""
import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_score import RA, TARGET, start_mock, write_input  # noqa: E402
from reference_client import load_client  # noqa: E402


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_gateway(upstream, concurrency):
    port = free_port()
    gw = subprocess.Popen([RA, "gateway", "--endpoint", upstream, "--port", str(port),
                           "--concurrency", str(concurrency), "--max-retries", "0"],
                          stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return gw, f"http://127.0.0.1:{port}"
        except OSError:
            if gw.poll() is not None or time.monotonic() > deadline:
                sys.exit("ra gateway did not start")
            time.sleep(0.05)


def peak_rss_mb(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def gateway_run(client, requests):
    t0 = time.monotonic()
    results = client.judge_batch(requests, timeout=600)
    wall = time.monotonic() - t0
    if len(results) != len(requests) or any(len(r.scores) != 4 for r in results):
        sys.exit("judge_batch returned missing or failed results")
    return wall


def score_run(input_path, url, concurrency, lines):
    out = tempfile.NamedTemporaryFile(suffix=".jsonl", delete=False).name
    t0 = time.monotonic()
    proc = subprocess.run([RA, "score", "--input", input_path, "--output", out, "--endpoint", url,
                           "--concurrency", str(concurrency), "--quiet", "--max-retries", "0"],
                          capture_output=True, text=True)
    wall = time.monotonic() - t0
    with open(out) as f:
        n = sum(1 for line in f if '"error":null' in line)
    os.unlink(out)
    if proc.returncode != 0 or n != lines:
        sys.exit(f"ra score failed ({proc.returncode}, {n} judged): {proc.stderr}")
    return wall


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=2560)
    p.add_argument("--latency-ms", type=int, default=200)
    p.add_argument("--capacity", type=int, default=256)
    p.add_argument("--concurrency", type=int, default=256)
    p.add_argument("--runs", type=int, default=3)
    a = p.parse_args()
    for exe in (RA, os.path.join(TARGET, "ra-mock")):
        if not os.path.exists(exe):
            sys.exit(f"{exe} is missing: cargo build --release -p ra-cli -p ra-mock")
    nominal = a.capacity * 1000 / a.latency_ms
    Client = load_client()
    with tempfile.TemporaryDirectory() as d:
        input_path = os.path.join(d, "in.jsonl")
        write_input(input_path, a.batch)
        with open(input_path) as f:
            requests = [json.loads(line) for line in f]
        for r in requests:
            del r["id"]
        mock, upstream = start_mock(a.latency_ms, a.capacity)
        gw, url = start_gateway(upstream, a.concurrency)
        try:
            client = Client(url, timeout=600, max_retries=0)
            if not client.health_check():
                sys.exit("the gateway is not healthy")
            # Alternate the two so that both see the same machine load.
            walls = {"gateway": [], "score": []}
            for _ in range(a.runs):
                walls["gateway"].append(gateway_run(client, requests))
                walls["score"].append(score_run(input_path, upstream, a.concurrency, a.batch))
            rss = peak_rss_mb(gw.pid)
        finally:
            gw.terminate()
            gw.wait(timeout=10)
            mock.stdin.close()
            mock.wait(timeout=10)
    print(f"{a.batch} requests, mock {a.capacity} slots x {a.latency_ms} ms "
          f"({nominal:.0f} judgments/s), {a.runs} runs each, medians:")
    for name, label in (("gateway", "rewardanything.Client.judge_batch -> ra gateway"),
                        ("score", "ra score (direct)")):
        wall = statistics.median(walls[name])
        rate = a.batch / wall
        print(f"  {label}: {wall:.2f} s, {rate:.0f} judgments/s, "
              f"{100 * rate / nominal:.1f}% of capacity "
              f"(runs: {', '.join(f'{w:.2f}' for w in walls[name])} s)")
    ratio = statistics.median(walls["score"]) / statistics.median(walls["gateway"])
    print(f"  gateway/ra score throughput ratio: {ratio:.2f}; gateway peak RSS {rss:.1f} MB")


if __name__ == "__main__":
    main()
