#!/usr/bin/env python3
"""Benchmark the Python package `rewardanything_rs` against openai-python (run by hand,
not in CI; issue 11 point 6).

Two figures, for the Python process only (the mock is a separate process):

1. CPU per judgment (user+sys of this process / judgments) for one N-item
   `Client.judge_batch` against the instant mock, beside openai-python's `AsyncOpenAI`
   with a semaphore of 256 on the same requests (rendered and parsed in Python the way
   a user of openai-python would: the same system prompt and user JSON, `json.loads` of
   the text after `</think>`).
2. Throughput against a 256-slot x 200 ms mock (1,280 judgments/s), as a share of that
   capacity, for both clients.

Requests have 4 responses of ~500 characters; answers ~2 KB (like scripts/bench_score.py).

    scripts/py-test.sh                       # builds and installs the package into target/py-venv
    target/py-venv/bin/pip install openai    # the baseline (optional: skipped if absent)
    cargo build --release -p ra-mock
    target/py-venv/bin/python scripts/bench_py_client.py [--items 20000] [--capacity-items 12800]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import resource
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SYSTEM_PROMPT_PATH = os.path.join(ROOT, "crates", "rewardanything-client", "src", "system_prompt.txt")


def mock_bin() -> str:
    for profile in ("release", "debug"):
        path = os.path.join(ROOT, "target", profile, "ra-mock")
        if os.path.exists(path):
            return path
    raise SystemExit("build ra-mock first: cargo build --release -p ra-mock")


def start_mock(*args: str):
    proc = subprocess.Popen(
        [os.environ.get("RA_MOCK_BIN", mock_bin()), "--host", "127.0.0.1", "--port", "0", "--exit-on-stdin-eof", *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    line = proc.stdout.readline()
    if not line.startswith("listening on "):
        proc.kill()
        raise SystemExit(f"ra-mock did not start: {line!r}")
    return proc, line.split()[-1]


def stop_mock(proc) -> None:
    proc.stdin.close()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def make_requests(n: int):
    rng = random.Random(42)
    words = (
        "the model answers with care and cites sources where it can while "
        "staying concise clear correct kind and safe for every user"
    ).split()
    out = []
    for i in range(n):
        responses = {name: " ".join(rng.choice(words) for _ in range(90))[:500] for name in ("alpha", "beta", "gamma", "delta")}
        out.append({"principle": "Prefer concise, correct answers.", "prompt": f"Question {i}: explain hash maps briefly.", "responses": responses})
    return out


def cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def measure(fn):
    """(wall s, cpu s, result) of fn()."""
    c0, t0 = cpu_seconds(), time.perf_counter()
    result = fn()
    return time.perf_counter() - t0, cpu_seconds() - c0, result


def run_rust(url: str, requests):
    from rewardanything_rs import Client

    client = Client(url, concurrency=256)
    client.connect()  # model discovery outside the measurement
    wall, cpu, results = measure(lambda: client.judge_batch(requests))
    failed = sum(1 for r in results if not r.ok)
    return wall, cpu, failed


def run_openai(url: str, requests):
    try:
        from openai import AsyncOpenAI
    except ImportError:
        return None
    system = open(SYSTEM_PROMPT_PATH, encoding="utf-8").read()

    async def main():
        client = AsyncOpenAI(base_url=url, api_key="bench", max_retries=3, timeout=600.0)
        model = (await client.models.list()).data[0].id
        sem = asyncio.Semaphore(256)

        async def one(req):
            names = list(req["responses"])
            masked = {f"model-{k + 1}": req["responses"][n] for k, n in enumerate(names)}
            user = json.dumps({"principle": req["principle"], "prompt": req["prompt"], "responses": masked})
            async with sem:
                resp = await client.chat.completions.create(
                    model=model,
                    messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
                    temperature=0.0,
                    max_tokens=4096,
                )
            text = resp.choices[0].message.content or ""
            verdict = json.loads(text.split("</think>")[-1].strip())
            return {names[int(m.split("-")[1]) - 1]: s for m, s in verdict["scores"].items()}

        t0, c0 = time.perf_counter(), cpu_seconds()
        results = await asyncio.gather(*(one(r) for r in requests), return_exceptions=True)
        wall, cpu = time.perf_counter() - t0, cpu_seconds() - c0
        await client.close()
        return wall, cpu, sum(1 for r in results if isinstance(r, BaseException))

    return asyncio.run(main())


def report(label: str, n: int, figures, capacity: float = 0.0, skipped: str = "pip install openai to compare") -> None:
    if figures is None:
        print(f"  {label:<34} skipped ({skipped})")
        return
    wall, cpu, failed = figures
    line = f"  {label:<34} {cpu / n * 1e6:9.1f} µs CPU/judgment  {n / wall:9.0f} judgments/s  wall {wall:6.2f} s  failed {failed}"
    if capacity:
        line += f"  {100 * n / wall / capacity:5.1f}% of capacity"
    print(line, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--items", type=int, default=20000, help="judgments against the instant mock")
    ap.add_argument("--capacity-items", type=int, default=12800, help="judgments against the 256 x 200 ms mock (0: skip)")
    ap.add_argument("--no-openai", action="store_true", help="skip the openai-python baseline")
    args = ap.parse_args()

    print(f"1. CPU of this Python process per judgment, {args.items} judgments, instant mock")
    proc, url = start_mock("--latency-ms", "0", "--think-bytes", "1800")
    try:
        requests = make_requests(args.items)
        rust = run_rust(url, requests)
        report("rewardanything_rs judge_batch", args.items, rust)
        base = None if args.no_openai else run_openai(url, requests)
        report("openai-python AsyncOpenAI (sem 256)", args.items, base, skipped="--no-openai" if args.no_openai else "pip install openai to compare")
        if base is not None:
            print(f"  => openai-python / rewardanything_rs CPU per judgment: {base[1] / rust[1]:.1f}x")
    finally:
        stop_mock(proc)

    if args.capacity_items:
        capacity = 256 / 0.2
        print(f"2. Throughput against a 256-slot x 200 ms mock ({capacity:.0f} judgments/s), {args.capacity_items} judgments")
        proc, url = start_mock("--latency-ms", "200", "--capacity", "256", "--think-bytes", "1800")
        try:
            requests = make_requests(args.capacity_items)
            report("rewardanything_rs judge_batch", args.capacity_items, run_rust(url, requests), capacity)
            if not args.no_openai:
                report("openai-python AsyncOpenAI (sem 256)", args.capacity_items, run_openai(url, requests), capacity)
        finally:
            stop_mock(proc)


if __name__ == "__main__":
    main()
