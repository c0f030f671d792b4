#!/usr/bin/env python3
"""A fleet of judges in simulation (run by hand, not in CI; prints figures, asserts none).

One `ra-mock --replicas N` process serves N mock replicas on loopback, each with
`--capacity` slots (vLLM's batch) and a latency (uniform within +-50 %, as thinking
lengths vary) chosen so that the fleet's capacity is about --fleet-rate judgments/s
whatever N (the machine, not the fleet, would otherwise be measured). `ra score` (or `ra gateway`'s batch jobs) judges the requests across them,
following an endpoints file that the benchmark rewrites (atomically) as replicas leave
and rejoin: discovery as `ra-serve` does it.

Scenarios:
  clean     every replica equal, none leaves.
  adverse   10% of the replicas 5x slower (latency and prefill); 10% of the fleet leaves
            per minute (drained: in-flight requests finish) and rejoins --away-s later.

Balance policies (`ra score --balance`, the same client and process for all):
  least-loaded  the default; round-robin (OpenRLHF across --remote_rm_url) and random
  (the reference) are the baselines.

Figures, per run:
  capacity   judgments/s in the steady window (from 10% to 80% of the answers, taken from
             the mock's own 100 ms timeline, so start-up and the last stragglers are out)
             over the capacity of the replicas in the endpoints file then (time-weighted).
  lost       requests without a judgment (error or missing line): must be 0.
  extra      attempts beyond one per request (retries), from the mock's counters.
  p50/p99    time at the replica (its queue and its latency) of each answered request, from
             the mock's attempt logs (ra score's latency_ms also counts the wait for a client
             slot, which the ordered window makes long by design).
  cpu/j      user+sys CPU of the `ra` process per judgment, in microseconds.

    cargo build --release -p ra-cli -p ra-mock
    python3 scripts/bench_fleet.py                                  # the §3 table (~10 min)
    python3 scripts/bench_fleet.py --sizes 1000 --requests 20000 --policies least-loaded
    python3 scripts/bench_fleet.py --gateway --sizes 16,256          # through ra gateway jobs
    python3 scripts/bench_fleet.py --affinity --policies least-loaded  # the §4 workloads

--affinity runs three workloads sharing a long prefix (RM-Bench-like: 9 pairwise calls per
item; K=4 permutations of one request; GRPO groups of 16 in chunks of 4) against mocks that
model vLLM's prefix cache (--prefill-us-per-token; by default a whole uncached ~1,000-token
prompt costs a quarter of the base latency) and prints the share of prompt tokens found in
the caches. The prefix-affinity balance policy it was written to measure (commit 6b0b194,
`--policies least-loaded,affinity,affinity:3` with that build's `ra` as RA_BIN) did not
win and was removed; see the README's "Scaling out".
"""
import argparse
import json
import os
import random
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TARGET = os.path.join(ROOT, "target", "release")
RA = os.environ.get("RA_BIN", os.path.join(TARGET, "ra"))
MOCK = os.environ.get("RA_MOCK_BIN", os.path.join(TARGET, "ra-mock"))
WORDS = ("the model answers with care and cites sources where it can while staying "
         "concise clear correct kind and safe for every user").split()


def text(rng, chars):
    return " ".join(rng.choice(WORDS) for _ in range(chars // 4))[:chars]


# ------------------------------------------------------------------ workloads

def independent(n, rng):
    for i in range(n):
        yield {"id": i, "principle": "Prefer concise, correct answers.",
               "prompt": f"Question {i}: explain hash maps briefly.",
               "responses": {k: text(rng, 500) for k in ("alpha", "beta", "gamma", "delta")}}


def long_prompt(rng, i):
    return f"Item {i}. " + text(rng, 3000)


def rmbench(n, rng):
    """RM-Bench: each item's 3 chosen x 3 rejected responses judged as 9 pairs."""
    out = []
    i = 0
    while len(out) < n:
        principle, prompt = "Prefer the correct, safe answer. " + text(rng, 300), long_prompt(rng, i)
        chosen = [text(rng, 800) for _ in range(3)]
        rejected = [text(rng, 800) for _ in range(3)]
        for c in range(3):
            for r in range(3):
                out.append({"id": len(out), "principle": principle, "prompt": prompt,
                            "responses": {"chosen": chosen[c], "rejected": rejected[r]}})
        i += 1
    return out[:n]


def permutations(n, rng, k=4):
    """One request judged under K orders of its responses (position-bias ensembles)."""
    out = []
    i = 0
    while len(out) < n:
        principle, prompt = "Prefer concise answers. " + text(rng, 300), long_prompt(rng, i)
        names = ["a", "b", "c", "d"]
        resp = {nm: text(rng, 600) for nm in names}
        for p in range(k):
            order = names[p:] + names[:p]
            out.append({"id": len(out), "principle": principle, "prompt": prompt,
                        "responses": {nm: resp[nm] for nm in order}, "mask_responses": False})
        i += 1
    return out[:n]


def grpo(n, rng, group=16, chunk=4):
    """A GRPO group of 16 rollouts for one prompt, judged in chunks of 4."""
    out = []
    i = 0
    while len(out) < n:
        principle, prompt = "Reward correct reasoning. " + text(rng, 300), long_prompt(rng, i)
        rollouts = [text(rng, 600) for _ in range(group)]
        for c in range(0, group, chunk):
            out.append({"id": len(out), "principle": principle, "prompt": prompt,
                        "responses": {f"r{c + j}": rollouts[c + j] for j in range(chunk)}})
        i += 1
    return out[:n]


WORKLOADS = {"independent": independent, "rmbench": rmbench, "permutations": permutations,
             "grpo": grpo}


# ------------------------------------------------------------------ the fleet

class Fleet:
    """ra-mock --replicas N, its endpoints file, and the churn thread."""

    def __init__(self, n, slots, latency_ms, slow, prefill_us, tmp, seed, requests):
        self.n, self.slots, self.latency_ms = n, slots, latency_ms
        self.slow = slow  # the last `slow` replicas are 5x slower
        self.stats_path = os.path.join(tmp, "mock-stats.json")
        self.file = os.path.join(tmp, "endpoints.json")
        args = [MOCK, "--port", "0", "--replicas", str(n), "--capacity", str(slots),
                "--latency-ms", str(latency_ms), "--latency-jitter-ms", str(latency_ms // 2),
                "--think-bytes", "300",
                "--slow-replicas", str(slow), "--slow-factor", "5",
                "--stats-file", self.stats_path, "--attempt-log", str(max(200, 4 * requests // n)),
                "--exit-on-stdin-eof"]
        if prefill_us:
            args += ["--prefill-us-per-token", str(prefill_us)]
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)
        self.urls = [self.proc.stdout.readline().strip().split()[-1] for _ in range(n)]
        self.present = set(range(n))
        self.lock = threading.Lock()
        self.log = []  # (time, capacity of present replicas)
        self.rng = random.Random(seed)
        self.stop = threading.Event()
        self.started = time.monotonic()
        self.write()

    def rate(self, i):
        per = self.slots * 1000 / self.latency_ms
        return per / 5 if i >= self.n - self.slow else per

    def total_rate(self):
        return sum(self.rate(i) for i in range(self.n))

    def write(self):
        with self.lock:
            urls = [self.urls[i] for i in sorted(self.present)]
            self.log.append((time.monotonic(), sum(self.rate(i) for i in self.present)))
        tmp = self.file + ".tmp"
        with open(tmp, "w") as f:
            json.dump({"endpoints": urls, "model": "RewardAnything-8B-v1"}, f)
        os.replace(tmp, self.file)

    def churn(self, per_minute, away_s):
        """Every second, `per_minute`/60 of the fleet leaves; each comes back after away_s."""
        owed = 0.0
        back = []  # (time, index)
        while not self.stop.wait(1.0):
            now = time.monotonic()
            changed = False
            for t, i in [b for b in back if b[0] <= now]:
                back.remove((t, i))
                with self.lock:
                    self.present.add(i)
                changed = True
            owed += per_minute * self.n / 60
            while owed >= 1 and len(self.present) > 1:
                owed -= 1
                with self.lock:
                    i = self.rng.choice(sorted(self.present))
                    self.present.discard(i)
                back.append((now + away_s, i))
                changed = True
            if changed:
                self.write()

    def capacity_between(self, t0, t1):
        """Time-weighted capacity of the replicas in the file between t0 and t1."""
        total, log = 0.0, self.log + [(float("inf"), None)]
        for (ta, cap), (tb, _) in zip(log, log[1:]):
            a, b = max(ta, t0), min(tb, t1)
            if b > a:
                total += cap * (b - a)
        return total / (t1 - t0) if t1 > t0 else float("nan")

    def close(self):
        self.stop.set()
        self.proc.stdin.close()
        self.proc.wait()
        with open(self.stats_path) as f:
            return json.load(f)


def steady_rate(stats, started_at, fleet, requests):
    """Answers/s between 10% and 80% of the answers, and the capacity then."""
    tick = stats["tick_ms"] / 1000
    series = stats["ok_per_tick"]
    lo, hi = 0.1 * requests, 0.8 * requests
    i0 = next((i for i, v in enumerate(series) if v >= lo), None)
    i1 = next((i for i, v in enumerate(series) if v >= hi), None)
    if i0 is None or i1 is None or i1 <= i0:
        return float("nan"), float("nan")
    rate = (series[i1] - series[i0]) / ((i1 - i0) * tick)
    t0, t1 = started_at + i0 * tick, started_at + i1 * tick
    return rate, fleet.capacity_between(t0, t1)


# ------------------------------------------------------------------ clients

def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def call(method, url, body=None, timeout=3600):
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, method=method,
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return json.loads(r.read())


def run_score(fleet, lines, policy, concurrency, tmp):
    inp, out = os.path.join(tmp, "in.jsonl"), os.path.join(tmp, "out.jsonl")
    with open(inp, "w") as f:
        for line in lines:
            f.write(json.dumps(line) + "\n")
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.monotonic()
    proc = subprocess.run([RA, "score", "--input", inp, "--output", out, "--endpoints-file",
                           fleet.file, "--concurrency", str(concurrency), "--balance", policy,
                           "--quiet"], capture_output=True, text=True)
    wall = time.monotonic() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode not in (0, 1):
        sys.exit(f"ra score failed ({proc.returncode}): {proc.stderr[-2000:]}")
    results = [json.loads(l) for l in open(out)] if os.path.exists(out) else []
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    lat = [r["latency_ms"] for r in results if r.get("error") is None]
    lost = len(lines) - len(lat)
    return wall, cpu, lat, lost


def run_gateway(fleet, lines, policy, concurrency, tmp):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    jobs = os.path.join(tmp, "jobs")
    gw = subprocess.Popen([RA, "gateway", "--endpoints-file", fleet.file, "--port", str(port),
                           "--concurrency", str(concurrency), "--balance", policy,
                           "--base-output-path", jobs, "--max-batch", str(len(lines) + 1)],
                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        for _ in range(600):
            try:
                call("GET", f"{base}/health", timeout=2)
                break
            except Exception:
                time.sleep(0.05)
        t0 = time.monotonic()
        body = {"requests": [{k: v for k, v in l.items() if k != "id"} for l in lines]}
        created = call("POST", f"{base}/api/batch_request", body)
        answer = call("GET", f"{base}/api/batch_request/{created['batch_request_id']}"
                             "?max_timeout=3600")
        wall = time.monotonic() - t0
        with open(f"/proc/{gw.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    finally:
        gw.terminate()
        gw.wait()
    ok = [r for r in answer if "error" not in r]
    return wall, cpu, [], len(lines) - len(ok)


# ------------------------------------------------------------------ main

def pct(values, q):
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def one_run(a, n, scenario, policy, workload, prefill_us, requests):
    slow = n // 10 if scenario == "adverse" else 0
    # At least 100 ms a judgment (a small fleet gets more slots per replica rather than
    # a latency the machine's timers would blur), and a latency such that the fleet
    # (fast replicas) serves about --fleet-rate judgments/s.
    slots = a.slots or max(2, round(a.fleet_rate * 0.1 / n))
    latency_ms = max(1, round(n * slots * 1000 / a.fleet_rate))
    rng = random.Random(7)
    lines = list(WORKLOADS[workload](requests, rng))
    with tempfile.TemporaryDirectory() as tmp:
        fleet = Fleet(n, slots, latency_ms, slow, prefill_us, tmp, seed=11, requests=requests)
        churner = None
        if scenario == "adverse":
            churner = threading.Thread(target=fleet.churn, args=(a.churn_per_minute, a.away_s),
                                       daemon=True)
            churner.start()
        # Enough in flight to fill every slot of the fleet, plus a margin.
        concurrency = max(8, int(n * slots * a.overcommit))
        fleet.concurrency = concurrency
        started = fleet.started
        try:
            runner = run_gateway if a.gateway else run_score
            wall, cpu, lat, lost = runner(fleet, lines, policy, concurrency, tmp)
        finally:
            stats = fleet.close()
            if churner:
                churner.join()
    rate, cap = steady_rate(stats, started, fleet, requests)
    attempts = sum(r["chat_requests"] for r in stats["replicas"])
    row = {
        "replicas": n, "scenario": scenario, "policy": policy, "workload": workload,
        "requests": requests, "latency_ms": latency_ms, "wall_s": wall,
        "rate": rate, "capacity": cap, "share": rate / cap if cap else float("nan"),
        "lost": lost, "extra": attempts - requests + lost,
        "p50": stats["sojourn_ms"]["p50"] or float("nan"),
        "p99": stats["sojourn_ms"]["p99"] or float("nan"), "cpu_us": cpu / requests * 1e6,
        "cached": sum(r["cached_tokens"] for r in stats["replicas"]),
        "prefilled": sum(r["prefilled_tokens"] for r in stats["replicas"]),
    }
    return row


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", default="1,16,256,1000")
    p.add_argument("--scenarios", default="clean,adverse")
    p.add_argument("--policies", default="least-loaded,round-robin,random")
    p.add_argument("--requests", type=int, default=None,
                   help="requests per run (default: 20 s of the fleet's capacity, at most 20,000)")
    p.add_argument("--fleet-rate", type=float, default=300.0,
                   help="fleet capacity in judgments/s without slow replicas (default 300)")
    p.add_argument("--slots", type=int, default=None,
                   help="capacity slots per replica (default: 2, more for small fleets so "
                        "that a judgment takes at least 100 ms)")
    p.add_argument("--overcommit", type=float, default=1.25,
                   help="client concurrency = slots of the fleet x this")
    p.add_argument("--churn-per-minute", type=float, default=0.10)
    p.add_argument("--away-s", type=float, default=10.0)
    p.add_argument("--gateway", action="store_true", help="judge through ra gateway's batch jobs")
    p.add_argument("--affinity", action="store_true", help="the §4 comparison")
    p.add_argument("--workloads", default="rmbench,permutations,grpo")
    p.add_argument("--prefill-us-per-token", type=int, default=None)
    p.add_argument("--json", help="also write the rows to this file")
    a = p.parse_args()
    for path in (RA, MOCK):
        if not os.path.exists(path):
            sys.exit(f"{path} missing: cargo build --release -p ra-cli -p ra-mock")
    sizes = [int(s) for s in a.sizes.split(",")]
    rows = []
    if a.affinity:
        if a.sizes == p.get_default("sizes"):
            sizes = [16, 64]
        policies = a.policies.split(",")
        scenarios = a.scenarios.split(",") if a.scenarios != p.get_default("scenarios") \
            else ["adverse"]
        workloads = a.workloads.split(",")
    else:
        policies, scenarios, workloads = a.policies.split(","), a.scenarios.split(","), \
            ["independent"]
    header = (f"{'replicas':>8} {'scenario':>8} {'workload':>12} {'policy':>13} {'reqs':>6} "
              f"{'lat ms':>6} {'rate/s':>7} {'cap/s':>7} {'share':>6} {'lost':>4} {'extra':>5} "
              f"{'p50 ms':>7} {'p99 ms':>7} {'cpu/j us':>8} {'wall s':>6}")
    if a.affinity:
        header += f" {'cached %':>8}"
    print(header, flush=True)
    for n in sizes:
        for scenario in scenarios:
            for workload in workloads:
                for policy in policies:
                    requests = a.requests or int(min(20000, max(2000, 20 * a.fleet_rate)))
                    prefill = 0
                    if a.affinity:
                        # A whole uncached prompt (~1,000 tokens) costs about a quarter of
                        # the base latency, as prefill vs thinking roughly does.
                        slots = a.slots or max(2, round(a.fleet_rate * 0.1 / n))
                        base = n * slots * 1000 / a.fleet_rate
                        prefill = a.prefill_us_per_token or max(1, int(base * 1000 * 0.25 / 1000))
                    r = one_run(a, n, scenario, policy, workload, prefill, requests)
                    rows.append(r)
                    line = (f"{n:>8} {scenario:>8} {workload:>12} {policy:>13} {requests:>6} "
                            f"{r['latency_ms']:>6} {r['rate']:>7.1f} {r['capacity']:>7.1f} "
                            f"{100 * r['share']:>5.1f}% {r['lost']:>4} {r['extra']:>5} "
                            f"{r['p50']:>7.0f} {r['p99']:>7.0f} {r['cpu_us']:>8.0f} "
                            f"{r['wall_s']:>6.1f}")
                    if a.affinity:
                        total = r["cached"] + r["prefilled"]
                        line += f" {100 * r['cached'] / total if total else 0:>7.1f}%"
                    print(line, flush=True)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(rows, f, indent=1)


if __name__ == "__main__":
    main()
