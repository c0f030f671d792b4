#!/usr/bin/env python3
"""Latency cost of `/get_reward` group coalescing (run by hand, not in CI).

Starts `ra-mock --latency-ms L` and, for each window W, `ra gateway --group-window-ms W`
in front of it; then plays GRPO steps the way OpenRLHF 0.11 calls a remote reward
model: for each of P prompts, G rollouts, each its own HTTP call with one query, all
of a step's calls in flight at once (threads + urllib, stdlib only). A rollout may start
up to J ms late (`--jitter-ms`, rollouts of one prompt finish generating at different
times). Prints, per W: per-call latency p50/p95/max, upstream calls (from the gateway's
own `/metrics`) and the mean group size.

    cargo build --release -p ra-cli -p ra-mock
    python3 scripts/bench_get_reward.py
    python3 scripts/bench_get_reward.py --group 8 --prompts 16 --steps 5 --windows 0,50,100 --jitter-ms 20
    python3 scripts/bench_get_reward.py --group 4 --k 8     # groups never fill: the worst case

Measured (release build, 2 shared cores, mock 200 ms, K = 8; p50 / p95 per call, upstream calls):

    16 prompts x 8, no jitter     W=0: 205/332 ms, 640 calls   W=50: 206/211 ms, 80   W=100: 207/227 ms, 80
    16 prompts x 8, jitter 100 ms W=0: 203/213 ms, 640 calls   W=50: 245/264 ms, 157  W=100: 248/302 ms, 80
    16 prompts x 4 (never full)   W=0: 203/206 ms, 320 calls   W=50: 253/256 ms, 80   W=100: 303/305 ms, 80

A full group costs nothing (it is sent when full); a group that never fills costs
exactly its window. The mock's latency does not grow with the group's size, a real
engine's does (a longer prompt and answer per call, but one shared prefill).

`--target debug` uses the debug binaries (the figures are dominated by the mock's
latency and the window, not by the gateway's CPU).
"""
import argparse
import json
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PRINCIPLE = "Prefer correct, concise answers."


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_mock(target, latency_ms):
    args = [os.path.join(target, "ra-mock"), "--port", "0", "--latency-ms", str(latency_ms),
            "--exit-on-stdin-eof"]
    mock = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    url = mock.stdout.readline().strip().split()[-1]
    return mock, url


def start_gateway(target, mock_url, window_ms, k):
    port = free_port()
    args = [os.path.join(target, "ra"), "gateway", "--endpoint", mock_url, "--port", str(port),
            "--principle", PRINCIPLE, "--group-window-ms", str(window_ms),
            "--max-group-size", str(k), "--grace", "5"]
    gw = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            with urllib.request.urlopen(base + "/health", timeout=2) as r:
                if r.status == 200:
                    return gw, base
        except (urllib.error.URLError, ConnectionError, OSError):
            pass
        if gw.poll() is not None or time.monotonic() > deadline:
            sys.exit(f"ra gateway did not start: {gw.stderr.read()}")
        time.sleep(0.05)


def stop(proc):
    proc.terminate()
    try:
        proc.wait(timeout=15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def upstream_calls(base):
    """(calls, rollouts) judged by /get_reward so far, from the gateway's histogram."""
    with urllib.request.urlopen(base + "/metrics", timeout=10) as r:
        text = r.read().decode()
    count = re.search(r"^ra_gateway_get_reward_group_size_count (\S+)", text, re.M)
    total = re.search(r"^ra_gateway_get_reward_group_size_sum (\S+)", text, re.M)
    return float(count.group(1)) if count else 0.0, float(total.group(1)) if total else 0.0


def chatml(question):
    return f"<|im_start|>user\n{question}<|im_end|>\n<|im_start|>assistant\n"


def one_call(base, prompt, response, delay, out, errors):
    time.sleep(delay)
    body = json.dumps({"query": [prompt + response + "<|im_end|>"], "prompts": [prompt],
                       "labels": [None]}).encode()
    req = urllib.request.Request(base + "/get_reward", data=body,
                                 headers={"Content-Type": "application/json"})
    t0 = time.monotonic()
    try:
        with urllib.request.urlopen(req, timeout=180) as r:
            answer = json.load(r)
        if answer["extra_logs"]["ra_failed"][0]:
            errors.append("failed judgment")
        out.append(time.monotonic() - t0)
    except Exception as e:  # noqa: BLE001 - a bench reports, it does not crash
        errors.append(repr(e))


def run_steps(base, prompts, group, steps, jitter_ms, rng):
    latencies, errors = [], []
    for step in range(steps):
        threads = []
        for p in range(prompts):
            prompt = chatml(f"Step {step}, question {p}: explain hash maps briefly.")
            for g in range(group):
                response = f"Rollout {g} of question {p}: a hash map stores pairs. score={g % 5 + 1}"
                delay = rng.uniform(0, jitter_ms / 1000) if jitter_ms else 0
                t = threading.Thread(target=one_call,
                                     args=(base, prompt, response, delay, latencies, errors))
                threads.append(t)
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    return latencies, errors


def pct(values, q):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--latency-ms", type=int, default=200, help="the mock's latency per request")
    p.add_argument("--group", type=int, default=8, help="rollouts per prompt (G)")
    p.add_argument("--k", type=int, help="the gateway's --max-group-size (default G; above G, "
                   "no group fills and each waits its whole window)")
    p.add_argument("--prompts", type=int, default=16, help="prompts per step")
    p.add_argument("--steps", type=int, default=5)
    p.add_argument("--jitter-ms", type=float, default=0.0, help="each call starts up to this late")
    p.add_argument("--windows", default="0,50,100", help="group windows to compare, in ms")
    p.add_argument("--target", default="release", choices=["release", "debug"])
    args = p.parse_args()
    target = os.path.join(ROOT, "target", args.target)
    rng = random.Random(42)
    mock, mock_url = start_mock(target, args.latency_ms)
    calls = args.prompts * args.group * args.steps
    print(f"mock latency {args.latency_ms} ms; {args.steps} steps x {args.prompts} prompts x "
          f"{args.group} rollouts = {calls} calls; K {args.k or args.group}; "
          f"jitter {args.jitter_ms} ms; {args.target} build")
    try:
        for w in [int(x) for x in args.windows.split(",")]:
            gw, base = start_gateway(target, mock_url, w, args.k or args.group)
            try:
                before = upstream_calls(base)
                t0 = time.monotonic()
                lat, errors = run_steps(base, args.prompts, args.group, args.steps,
                                        args.jitter_ms, rng)
                wall = time.monotonic() - t0
                after = upstream_calls(base)
            finally:
                stop(gw)
            up = after[0] - before[0]
            judged = after[1] - before[1]
            print(f"W={w:>4} ms: per-call p50 {1000 * statistics.median(lat):6.0f} ms, "
                  f"p95 {1000 * pct(lat, 0.95):6.0f} ms, max {1000 * max(lat):6.0f} ms; "
                  f"upstream calls {up:.0f} for {judged:.0f} rollouts "
                  f"(mean group {judged / max(up, 1):.2f}); wall {wall:.1f} s; "
                  f"errors {len(errors)}" + (f" (first: {errors[0]})" if errors else ""))
    finally:
        mock.stdin.close()
        mock.wait(timeout=10)


if __name__ == "__main__":
    main()
