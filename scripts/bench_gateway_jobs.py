#!/usr/bin/env python3
"""Benchmark `ra gateway`'s batch jobs against the standalone `ra-mock` (run by hand).

Submits one job of N requests (4 responses of ~500 characters each) with
POST /api/batch_request, waits for it with GET /api/batch_request/{id}, and prints the
wall time from submission to the complete answer, judgments/s against the mock's
capacity (capacity / latency), and the gateway's peak RSS (VmHWM).

    cargo build --release -p ra-cli -p ra-mock
    python3 scripts/bench_gateway_jobs.py                      # 2,560 requests, 256 slots x 200 ms
    python3 scripts/bench_gateway_jobs.py --lines 10000 --latency-ms 0
"""
import argparse
import json
import os
import random
import socket
import subprocess
import tempfile
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.path.join(ROOT, "target", "release")


def requests(lines):
    rng = random.Random(42)
    words = ("the model answers with care and cites sources where it can while "
             "staying concise clear correct kind and safe for every user").split()
    out = []
    for i in range(lines):
        responses = {name: " ".join(rng.choice(words) for _ in range(90))[:500]
                     for name in ("alpha", "beta", "gamma", "delta")}
        out.append({"principle": "Prefer concise, correct answers.",
                    "prompt": f"Question {i}: explain hash maps briefly.",
                    "responses": responses})
    return out


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(method, url, body=None, timeout=900):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def peak_rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--lines", type=int, default=2560)
    p.add_argument("--latency-ms", type=int, default=200)
    p.add_argument("--capacity", type=int, default=256)
    p.add_argument("--concurrency", type=int, default=256)
    a = p.parse_args()
    mock = subprocess.Popen([os.path.join(TARGET, "ra-mock"), "--port", "0", "--latency-ms",
                             str(a.latency_ms), "--think-bytes", "1800", "--capacity",
                             str(a.capacity), "--exit-on-stdin-eof"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    url = mock.stdout.readline().strip().split()[-1]
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory() as jobs:
        gw = subprocess.Popen([os.path.join(TARGET, "ra"), "gateway", "--endpoint", url,
                               "--port", str(port), "--concurrency", str(a.concurrency),
                               "--base-output-path", jobs])
        try:
            for _ in range(300):
                try:
                    call("GET", f"{base}/health", timeout=2)
                    break
                except Exception:
                    time.sleep(0.05)
            body = {"requests": requests(a.lines)}
            started = time.monotonic()
            created = call("POST", f"{base}/api/batch_request", body)
            accepted = time.monotonic() - started
            answer = call("GET", f"{base}/api/batch_request/{created['batch_request_id']}"
                                 "?max_timeout=3600")
            wall = time.monotonic() - started
            assert len(answer) == a.lines and all("error" not in r for r in answer)
            rss = peak_rss_mib(gw.pid)
        finally:
            gw.terminate()
            gw.wait()
            mock.stdin.close()
            mock.wait()
    rate = a.lines / wall
    line = f"job of {a.lines}: {wall:.2f} s ({accepted:.2f} s to accept it), {rate:.0f} judgments/s"
    if a.latency_ms:
        capacity = a.capacity * 1000 / a.latency_ms
        line += f" ({100 * rate / capacity:.1f} % of the mock's {capacity:.0f}/s)"
    print(f"{line}; gateway peak RSS {rss:.1f} MiB")


if __name__ == "__main__":
    main()
