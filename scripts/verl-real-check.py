#!/usr/bin/env python3
"""By-hand check of rewardanything_rs.verl inside the real veRL (not run by CI: veRL needs
torch, several GB). It builds veRL's own reward loop (`RewardLoopManager`, which starts
`reward.num_workers` `RewardLoopWorker` Ray actors running the `naive` reward manager
with our `compute_score_async` as the custom reward function) and sends rollouts the two
ways veRL does:

* `stream`: the agent loop's path, each finished rollout to
  `random.choice(reward_loop_worker_handles).compute_score.remote(one_sample)`;
* `batch`: `RewardLoopManager.compute_rm_score(batch)`, contiguous chunks per worker.

It prints, per worker count, the upstream calls ra-mock answered per GRPO group and
checks that every reward is the score ra-mock gives that sample's own response.

Setup (a venv of ~6 GB):
    python3 -m venv /work/verl-venv
    /work/verl-venv/bin/pip install "verl==0.9.1" --no-deps
    /work/verl-venv/bin/pip install ray "tensordict>=0.8,<=0.10,!=0.9.0" omegaconf hydra-core \
        codetiming orjson torch "transformers>=5.5.3,<5.11,!=5.6.0" tokenizers numpy pandas pyarrow
    /work/verl-venv/bin/pip install crates/rewardanything-py
    cargo build --release -p ra-mock
Run:
    /work/verl-venv/bin/python scripts/verl-real-check.py --workers 1 2 8
Extra environment for the reward workers: --env NAME=VALUE (e.g. RA_GROUP_SIZE=4).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import re
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

_REPORT = re.compile(r"ra-mock: (\d+) chat requests")


def start_mock(binary: str, latency_ms: int) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [binary, "--host", "127.0.0.1", "--port", "0", "--exit-on-stdin-eof", "--latency-ms", str(latency_ms)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    line = proc.stdout.readline()
    if not line.startswith("listening on "):
        proc.kill()
        raise SystemExit(f"ra-mock did not start: {line!r}")
    return proc, line[len("listening on ") :].strip()


def stop_mock(proc: subprocess.Popen) -> int:
    _, err = proc.communicate(timeout=30)
    m = _REPORT.search(err or "")
    if m is None:
        raise SystemExit(f"no ra-mock report: {err!r}")
    return int(m.group(1))


def make_tokenizer(directory: Path, corpus: list[str]) -> None:
    """A small byte-level BPE tokenizer saved where veRL's hf_tokenizer can load it
    (no network: the model's own tokenizer is not needed, only decode())."""
    from tokenizers import ByteLevelBPETokenizer
    from transformers import PreTrainedTokenizerFast

    bpe = ByteLevelBPETokenizer()
    bpe.train_from_iterator(corpus * 4, vocab_size=400, min_frequency=1, special_tokens=["<pad>", "<eos>"])
    tok = PreTrainedTokenizerFast(tokenizer_object=bpe._tokenizer, pad_token="<pad>", eos_token="<eos>")
    tok.save_pretrained(str(directory))


def make_config(tokenizer_dir: Path, workers: int):
    import verl
    from omegaconf import OmegaConf

    base = Path(verl.__file__).parent / "trainer" / "config" / "_generated_ppo_trainer.yaml"
    cfg = OmegaConf.load(base)
    # veRL loads the file by path, so a package module with relative imports cannot be
    # named directly: a one-line file importing it is what the README tells users to write.
    shim = tokenizer_dir / "reward_fn.py"
    shim.write_text("from rewardanything_rs.verl import compute_score_async  # noqa: F401\n")

    OmegaConf.update(cfg, "actor_rollout_ref.model.path", str(tokenizer_dir))
    OmegaConf.update(cfg, "reward.num_workers", workers)
    OmegaConf.update(cfg, "reward.custom_reward_function.path", str(shim))
    OmegaConf.update(cfg, "reward.custom_reward_function.name", "compute_score_async")
    OmegaConf.update(cfg, "reward.reward_manager.name", "naive")
    OmegaConf.update(cfg, "reward.reward_model.enable", False)
    return cfg


def sample(tok, prompt: str, response: str, principle: str):
    """One veRL DataProto row as the agent loop builds it."""
    import numpy as np
    import torch
    from tensordict import TensorDict
    from verl import DataProto

    p = tok(prompt, add_special_tokens=False)["input_ids"]
    r = tok(response, add_special_tokens=False)["input_ids"]
    ids = torch.tensor([p + r])
    batch = TensorDict(
        {
            "prompts": torch.tensor([p]),
            "responses": torch.tensor([r]),
            "input_ids": ids,
            "attention_mask": torch.ones_like(ids),
            "position_ids": torch.arange(ids.shape[1]).unsqueeze(0),
        },
        batch_size=1,
    )
    nt = {
        "data_source": np.array(["ra-check"], dtype=object),
        "reward_model": np.array([{"ground_truth": None}], dtype=object),
        "extra_info": np.array([{"prompt": prompt, "principle": principle}], dtype=object),
    }
    return DataProto(batch=batch, non_tensor_batch=nt)


def rollouts(groups: int, n: int, seed: int):
    rng = random.Random(seed)
    out = []
    for g in range(groups):
        for k in range(n):
            s = rng.randint(1, 5)
            out.append((f"Question {g}: what is {g}+{g}?", f"Answer {g}.{k} score={s}", s))
    return out


def run(args, workers: int, mode: str) -> tuple[int, int, list]:
    import ray
    from verl.experimental.reward_loop.reward_loop import RewardLoopManager

    proc, url = start_mock(args.mock, args.latency_ms)
    env = {"RA_ENDPOINT": url, "RA_PRINCIPLE": "Prefer correct answers."}
    env.update(dict(kv.split("=", 1) for kv in args.env))
    data = rollouts(args.groups, args.n, seed=workers)
    with tempfile.TemporaryDirectory() as tmp:
        make_tokenizer(Path(tmp), [p + " " + r for p, r, _ in data])
        ray.init(num_cpus=max(4, workers + 2), runtime_env={"env_vars": env}, include_dashboard=False,
                 log_to_driver=False)
        try:
            cfg = make_config(Path(tmp), workers)
            manager = RewardLoopManager(cfg)
            from transformers import AutoTokenizer

            tok = AutoTokenizer.from_pretrained(tmp)
            rows = [sample(tok, p, r, "Prefer correct answers.") for p, r, _ in data]
            if mode == "stream":
                handles = manager.reward_loop_worker_handles
                refs = [random.choice(handles).compute_score.remote(row) for row in rows]
                results = ray.get(refs)
                rewards = [res["reward_score"] for res in results]
                extras = [res["reward_extra_info"] for res in results]
            else:
                from verl import DataProto

                out = manager.compute_rm_score(DataProto.concat(rows))
                scores = out.batch["rm_scores"]
                rewards = [float(scores[i].sum()) for i in range(len(rows))]
                extras = [{k: out.non_tensor_batch[k][i] for k in out.meta_info["reward_extra_keys"]}
                          for i in range(len(rows))]
        finally:
            ray.shutdown()
    calls = stop_mock(proc)
    wrong = [i for i, (r, (_, _, s)) in enumerate(zip(rewards, data)) if abs(r - s) > 1e-6]
    errors = [e.get("ra_error") for e in extras if e.get("ra_error")]
    return calls, len(wrong), errors


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2, 8])
    ap.add_argument("--groups", type=int, default=3)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--latency-ms", type=int, default=50)
    ap.add_argument("--modes", nargs="+", default=["stream", "batch"])
    ap.add_argument("--mock", default=str(REPO / "target" / "release" / "ra-mock"))
    ap.add_argument("--env", action="append", default=[], help="NAME=VALUE for the reward workers")
    args = ap.parse_args()
    import ray
    import verl

    print(f"veRL {verl.__version__}, ray {ray.__version__}; {args.groups} groups x {args.n} rollouts; "
          f"env {args.env or '-'}")
    print(f"{'mode':8} {'workers':>7} {'upstream calls':>14} {'per group':>9} {'wrong rewards':>13} errors")
    for mode in args.modes:
        for w in args.workers:
            calls, wrong, errors = run(args, w, mode)
            print(f"{mode:8} {w:>7} {calls:>14} {calls / args.groups:>9.2f} {wrong:>13} {errors[:3]}")
            sys.stdout.flush()


if __name__ == "__main__":
    main()
