#!/usr/bin/env python3
"""Upstream calls per GRPO group when 1, 2 or 8 Ray reward workers judge it (issue 19 §1).

Stand-ins for veRL 0.9.1's reward-loop workers (async actors awaiting
``rewardanything_rs.verl.compute_score_async``; each finished rollout sent to
``random.choice`` of them) judge G prompts x n rollouts against ra-mock, which counts the
upstream calls. Two settings per worker count:

* per-process: ``RA_GROUP_BACKEND=local``, no group size, the default 50 ms window: each
  worker coalesces only what it sees itself (what main did);
* shared: the default backend (one named Ray actor) with ``RA_GROUP_SIZE=n``.

Usage (after scripts/py-test.sh built the wheel and ra-mock):
    target/py-venv/bin/python scripts/bench_ray_groups.py [--groups 3] [--n 4]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import subprocess
from pathlib import Path

import ray

REPO = Path(__file__).resolve().parents[1]
MOCK = os.environ.get("RA_MOCK_BIN", str(REPO / "target" / "debug" / "ra-mock"))


@ray.remote(num_cpus=0)
class VerlRewardWorker:
    async def compute_score(self, env, prompt, response):
        os.environ.update(env)
        from rewardanything_rs import verl

        return await verl.compute_score_async(
            data_source="ds", solution_str=response, ground_truth=None,
            extra_info={"prompt": prompt, "principle": "Be correct."},
            reward_router_address=None, reward_model_tokenizer=None,
        )


def upstream_calls(workers, env, groups: int, n: int, seed: int) -> int:
    mock = subprocess.Popen([MOCK, "--host", "127.0.0.1", "--port", "0", "--exit-on-stdin-eof"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    url = mock.stdout.readline().split("listening on ", 1)[1].strip()
    env = dict(env, RA_ENDPOINT=url)
    rng = random.Random(seed)
    samples = [(f"question {g}", f"g{g} r{k} score={1 + k % 5}") for g in range(groups) for k in range(n)]
    rng.shuffle(samples)
    out = ray.get([rng.choice(workers).compute_score.remote(env, p, r) for p, r in samples])
    assert all(o["ra_error"] == "" for o in out), out
    _, err = mock.communicate(timeout=30)
    return int(re.search(r"ra-mock: (\d+) chat requests", err).group(1))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--groups", type=int, default=3)
    ap.add_argument("--n", type=int, default=4)
    args = ap.parse_args()
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    base = {"RA_API_KEY": "", "RA_MODEL": ""}
    settings = {
        "per-process (main)": dict(base, RA_GROUP_BACKEND="local", RA_GROUP_SIZE="", RA_COALESCE_MS="50"),
        "shared actor": dict(base, RA_GROUP_BACKEND="auto", RA_GROUP_SIZE=str(args.n), RA_COALESCE_MS=""),
    }
    print(f"{args.groups} prompts x {args.n} rollouts; upstream calls (per group)")
    print(f"{'workers':>8}  " + "  ".join(f"{name:>22}" for name in settings))
    for count in (1, 2, 8):
        workers = [VerlRewardWorker.remote() for _ in range(count)]
        cells = []
        for name, env in settings.items():
            calls = upstream_calls(workers, env, args.groups, args.n, seed=count)
            cells.append(f"{calls:>3} ({calls / args.groups:.2f})")
        print(f"{count:>8}  " + "  ".join(f"{c:>22}" for c in cells))
        for w in workers:
            ray.kill(w)
    ray.shutdown()


if __name__ == "__main__":
    main()
