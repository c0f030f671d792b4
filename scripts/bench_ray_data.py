#!/usr/bin/env python3
"""Ray Data batch scoring, by hand (printed, not asserted): rewardanything_rs.ray's
judge_dataset beside ray.data.llm's HttpRequestProcessorConfig posting the same chat
requests (RewardAnything's prompt, rendered by the Rust client) to the same ra-mock.

Rows/s once running: the rows judged between a quarter and three quarters of the rows
were done (start-up, actor creation and model discovery, and the tail aside), as a share
of the mock's capacity (slots / latency); ours from each batch's completion time taken in
the actor (output reaches the driver in bursts), the peer's from its output's arrival.
CPU per row: the user+system time of every Ray process (the driver and its descendants:
GCS, raylet, workers; the mock excluded) between a quarter and three quarters of the
output, per row (the whole run's in brackets).

Usage (ray[data] 2.60 in the venv; the peer needs aiohttp and pydantic too, which
ray[llm] pulls in with vLLM):
    target/py-venv/bin/python -m pip install aiohttp pydantic
    target/py-venv/bin/python scripts/bench_ray_data.py [--rows 24000] [--cpus 2]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def descendants(root: int) -> list:
    children: dict = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                ppid = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def cpu_seconds(pids, exclude) -> float:
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        if pid in exclude:
            continue
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # utime, stime, cutime, cstime: fields 14-17 (counted after the comm field).
        total += sum(int(x) for x in fields[11:15]) / tick
    return total


class Mock:
    def __init__(self, slots: int, latency_ms: int):
        binary = os.environ.get("RA_MOCK_BIN", str(REPO / "target" / "debug" / "ra-mock"))
        self.proc = subprocess.Popen(
            [binary, "--port", "0", "--capacity", str(slots), "--latency-ms", str(latency_ms), "--exit-on-stdin-eof"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        self.url = self.proc.stdout.readline().split("listening on ", 1)[1].strip()

    def stop(self):
        self.proc.stdin.close()
        self.proc.wait(20)


class Window:
    """Counts rows as the output arrives and samples the clock and the Ray processes' CPU
    when a quarter and three quarters of the rows are out: the rate in between is the
    rate once running (start-up and the tail aside)."""

    def __init__(self, n, exclude):
        self.n, self.exclude, self.seen, self.marks = n, exclude, 0, []

    def consume(self, batches):
        self.done_at = []
        for b in batches:
            self.seen += len(next(iter(b.values())))
            if "done_at" in b:
                self.done_at.extend(b["done_at"].tolist())
            while len(self.marks) < 2 and self.seen >= self.n * (1 + 2 * len(self.marks)) / 4:
                self.marks.append((self.seen, time.monotonic(), cpu_seconds(descendants(os.getpid()), self.exclude)))
        return self.seen


PRINCIPLE = "Prefer correct answers."


def items(n):
    return [{"id": i, "prompt": f"question {i}", "responses": {"a": f"a{i} score={i % 5 + 1}", "b": f"b{i}"}} for i in range(n)]


def run_ours(ray, mock, args, n, window):
    import rewardanything_rs.ray as rr

    judge = rr.Judge

    # The time each batch's judgments were done, taken in the actor: output reaches the
    # driver in bursts (Ray Data buffers it), so arrival times would overstate the rate.
    class TimedJudge(judge):
        def __call__(self, batch):
            out = super().__call__(batch)
            return out.append_column("done_at", __import__("pyarrow").array([time.time()] * out.num_rows))

    rr.Judge = TimedJudge  # judge_dataset's own map_batches, with this class
    try:
        return _run_ours(ray, mock, args, n, window, rr.judge_dataset)
    finally:
        rr.Judge = judge


def _run_ours(ray, mock, args, n, window, judge_dataset):

    ds = ray.data.from_items(items(n), override_num_blocks=max(8, n // args.batch_size))
    out = judge_dataset(
        ds, PRINCIPLE, endpoints=mock.url, actors=args.actors, batch_size=args.batch_size, num_cpus=args.actor_cpus,
        max_concurrency=args.max_concurrency
    )
    return window.consume(out.iter_batches(batch_size=None, batch_format="numpy"))


def rendered(rows):
    """The exact chat messages our client sends for each row: `ra render` (the Rust
    client's rendering, with its reference masking)."""
    binary = os.environ.get("RA_BIN", str(REPO / "target" / "debug" / "ra"))
    lines = "".join(json.dumps({"principle": PRINCIPLE, "prompt": r["prompt"], "responses": r["responses"]}) + "\n" for r in rows)
    out = subprocess.run([binary, "render"], input=lines, capture_output=True, text=True, check=True).stdout
    return [json.loads(line)["messages"] for line in out.splitlines()]


def run_peer(ray, mock, args, n, concurrency, qps, window):
    from ray.data.llm import HttpRequestProcessorConfig, build_processor

    rows = items(n)
    for row, messages in zip(rows, rendered(rows)):
        row["messages"] = messages
    config = HttpRequestProcessorConfig(
        url=mock.url + "/chat/completions", batch_size=args.peer_batch_size, concurrency=concurrency, qps=qps
    )
    processor = build_processor(
        config,
        preprocess=lambda row: {
            "id": row["id"],
            "payload": {"model": "RewardAnything-8B-v1", "messages": row["messages"], "max_tokens": 4096, "temperature": 0.0},
        },
        postprocess=lambda row: {"id": row["id"], "http_response": str(row["http_response"])[:64]},
    )
    ds = ray.data.from_items(rows, override_num_blocks=max(4, concurrency))
    return window.consume(processor(ds).iter_batches(batch_size=None, batch_format="numpy"))


def measure(ray, run, n, cpus, slots, latency_ms):
    """(wall s, whole-run CPU s, rows/s and CPU s per row between a quarter and three
    quarters of the output) of one run on a fresh Ray and mock."""
    mock = Mock(slots, latency_ms)
    ray.init(num_cpus=cpus, include_dashboard=False, log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    exclude = {mock.proc.pid}
    before = cpu_seconds(descendants(os.getpid()), exclude)
    window = Window(n, exclude)
    t0 = time.monotonic()
    try:
        seen = run(mock, n, window)
        wall = time.monotonic() - t0
        # Before shutdown: the workers' CPU is read while they live.
        cpu = cpu_seconds(descendants(os.getpid()), exclude) - before
    finally:
        ray.shutdown()
        mock.stop()
    if seen != n:
        raise SystemExit(f"{n} rows in, {seen} out")
    (r1, t1, c1), (r2, t2, c2) = window.marks
    rate = (r2 - r1) / (t2 - t1)
    if window.done_at:
        done = sorted(window.done_at)
        q1, q3 = done[n // 4], done[3 * n // 4]
        rate = (3 * n // 4 - n // 4) / (q3 - q1)
    return wall, cpu, rate, (c2 - c1) / (r2 - r1)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--rows", type=int, default=24000)
    p.add_argument("--peer-rows", type=int, default=400)
    p.add_argument("--cpus", type=int, default=2)
    p.add_argument("--slots", type=int, default=256)
    p.add_argument("--latency-ms", type=int, default=200)
    p.add_argument("--actors", type=int, default=2)
    p.add_argument("--actor-cpus", type=float, default=0.5)
    p.add_argument("--batch-size", type=int, default=256)
    p.add_argument("--max-concurrency", type=int, default=4, help="batches judged at once per actor")
    p.add_argument("--peer-batch-size", type=int, default=64)
    p.add_argument("--peer", default="4:none,16:none", help="concurrency:qps pairs for ray.data.llm (qps none: its default)")
    p.add_argument("--skip-ours", action="store_true")
    args = p.parse_args()

    import ray

    capacity = args.slots / (args.latency_ms / 1000.0)
    runs = []
    if not args.skip_ours:
        runs.append(
            ("rewardanything_rs.ray.judge_dataset", f"actors={args.actors}x{args.actor_cpus}cpu batch={args.batch_size}x{args.max_concurrency}", lambda m, n, w: run_ours(ray, m, args, n, w), args.rows)
        )
    for spec in filter(None, args.peer.split(",")):
        c, q = spec.split(":")
        qps = None if q == "none" else int(q)
        runs.append(
            (
                "ray.data.llm HttpRequestProcessorConfig",
                f"concurrency={c} qps={q} batch={args.peer_batch_size}",
                lambda m, n, w, c=int(c), qps=qps: run_peer(ray, m, args, n, c, qps, w),
                args.peer_rows,
            )
        )
    print(f"mock: {args.slots} slots x {args.latency_ms} ms = {capacity:.0f} rows/s capacity; Ray on {args.cpus} CPUs")
    print("once running: between a quarter and three quarters of the output; whole run in brackets")
    print(f"{'what':42} {'settings':34} {'rows':>6} {'wall s':>7} {'rows/s':>13} {'% cap':>6} {'CPU ms/row':>14}")
    for name, settings, run, n in runs:
        wall, cpu, rate, cpu_row = measure(ray, run, n, args.cpus, args.slots, args.latency_ms)
        print(
            f"{name:42} {settings:34} {n:>6} {wall:>7.1f} {rate:>6.0f} ({n / wall:>4.0f}) {100 * rate / capacity:>5.1f}% {1000 * cpu_row:>6.2f} ({1000 * cpu / n:>5.2f})",
            flush=True,
        )


if __name__ == "__main__":
    sys.exit(main())
