"""One GRPO group however many Ray processes judge it (issue 19 §1).

Stand-ins for the frameworks' reward workers, called as the frameworks call them (CI
cannot install torch): veRL 0.9.1's reward loop sends each finished rollout to
``random.choice`` of its reward-loop workers, async actors that await
``compute_score_async(data_source=, solution_str=, ground_truth=, extra_info=,
reward_router_address=, reward_model_tokenizer=)``; OpenRLHF 0.11.2's executor calls
``reward_func(queries, prompts, labels)`` with one rollout, blocking a thread. Upstream
calls are counted by ra-mock."""

from __future__ import annotations

import os
import random
import time
from typing import Any, Dict, List

import pytest
import ray

from rewardanything_rs import _group_actor

CHATML = "<|im_start|>system\nYou are helpful.<|im_end|>\n<|im_start|>user\n{q}<|im_end|>\n<|im_start|>assistant\n"


@ray.remote(num_cpus=0)
class VerlRewardWorker:
    """veRL's ``RewardLoopWorker``: an async actor awaiting the custom reward function."""

    async def compute_score(self, env: Dict[str, str], sample: Dict[str, Any]) -> Dict[str, Any]:
        os.environ.update(env)
        from rewardanything_rs import verl

        return await verl.compute_score_async(
            data_source="ds",
            solution_str=sample["response"],
            ground_truth=None,
            extra_info={"prompt": sample["prompt"], "principle": "Be correct."},
            reward_router_address=None,
            reward_model_tokenizer=None,
        )


@ray.remote(num_cpus=0, max_concurrency=64)
class OpenrlhfWorker:
    """OpenRLHF's executor: ``reward_func`` with one rollout per call, in a thread."""

    def reward(self, env: Dict[str, str], query: str, prompt: str) -> Dict[str, Any]:
        os.environ.update(env)
        from rewardanything_rs import openrlhf

        return openrlhf.reward_func([query], [prompt], [{"principle": "Be correct."}])


@pytest.fixture(scope="module")
def ray_workers():
    ray.init(address="local", num_cpus=2, include_dashboard=False, namespace="ra-groups", log_to_driver=False)
    try:
        yield {
            "verl": [VerlRewardWorker.remote() for _ in range(4)],
            "openrlhf": [OpenrlhfWorker.remote() for _ in range(3)],
        }
    finally:
        ray.shutdown()


def env(mock, **extra: str) -> Dict[str, str]:
    e = {"RA_ENDPOINT": mock.url, "RA_API_KEY": "", "RA_MODEL": "", "RA_GROUP_BACKEND": "auto", "RA_COALESCE_MS": "60000", "RA_GROUP_WAIT_S": "120"}
    e.update(extra)
    return e


def rollouts(groups: int, n: int) -> List[Dict[str, Any]]:
    """Group g's rollout k, shuffled as they finish; each with its own score marker."""
    out = [{"prompt": f"question {g}", "response": f"g{g} r{k} score={1 + (g + k) % 5}", "score": float(1 + (g + k) % 5)} for g in range(groups) for k in range(n)]
    random.Random(7).shuffle(out)
    return out


def test_verl_reward_loop_workers_judge_each_group_in_one_call(start_mock, ray_workers):
    mock = start_mock()
    e = env(mock, RA_GROUP_SIZE="4")
    samples = rollouts(groups=3, n=4)
    workers = ray_workers["verl"]
    pick = random.Random(1)
    refs = [pick.choice(workers).compute_score.remote(e, s) for s in samples]
    out = ray.get(refs, timeout=120)
    for s, o in zip(samples, out):
        assert o["ra_error"] == "" and o["score"] == s["score"], (s, o)
    assert mock.stop()["chat_requests"] == 3, "one upstream call per group"


def test_openrlhf_one_rollout_calls_meet_in_one_group(start_mock, ray_workers):
    mock = start_mock()
    e = env(mock, RA_GROUP_SIZE="4")
    samples = rollouts(groups=3, n=4)
    workers = ray_workers["openrlhf"]
    pick = random.Random(2)
    refs = [
        pick.choice(workers).reward.remote(e, CHATML.format(q=s["prompt"]) + s["response"] + "<|im_end|>", CHATML.format(q=s["prompt"]))
        for s in samples
    ]
    out = ray.get(refs, timeout=120)
    for s, o in zip(samples, out):
        assert o["ra_error"] == [""] and o["scores"] == [s["score"]], (s, o)
    assert mock.stop()["chat_requests"] == 3, "one upstream call per group"


def wait_until(what: str, condition, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"never: {what}")
        time.sleep(0.05)


def test_a_killed_group_actor_fails_its_waiting_rollouts_and_is_recreated(start_mock, ray_workers, monkeypatch):
    mock = start_mock()
    e = env(mock, RA_GROUP_SIZE="4")
    for k, v in e.items():
        monkeypatch.setenv(k, v)
    name = _group_actor.actor_name(_group_actor.settings(60.0, 8, 4))
    workers = ray_workers["verl"]
    # Two rollouts of a group of four wait in the actor (the window is a minute).
    waiting = [workers[i].compute_score.remote(e, {"prompt": "q", "response": f"r{i} score=5"}) for i in range(2)]

    def actor_stats():
        try:
            return ray.get(ray.get_actor(name, namespace="ra-groups").stats.remote(), timeout=30)
        except ValueError:  # not made yet
            return None

    wait_until("two rollouts waiting in the group actor", lambda: (actor_stats() or {}).get("waiting") == 2)
    first_pid = actor_stats()["pid"]
    ray.kill(ray.get_actor(name, namespace="ra-groups"), no_restart=True)
    for o in ray.get(waiting, timeout=60):
        # The failure reward and why; never a hang.
        assert o["ra_error"] == "group_actor" and o["score"] == 0.0, o
    # The next calls make a new actor and are judged there, together.
    samples = [{"prompt": "q2", "response": f"r{i} score={i + 1}"} for i in range(4)]
    out = ray.get([workers[i % 2].compute_score.remote(e, s) for i, s in enumerate(samples)], timeout=120)
    assert [o["score"] for o in out] == [1.0, 2.0, 3.0, 4.0], out
    assert actor_stats()["pid"] != first_pid
    assert mock.stop()["chat_requests"] == 1


def test_no_rollout_waits_past_the_bound(start_mock, ray_workers):
    mock = start_mock()
    # A group of four that only ever gets one rollout, a window of a minute, a bound of 1 s.
    e = env(mock, RA_GROUP_SIZE="4", RA_GROUP_WAIT_S="1")
    o = ray.get(ray_workers["verl"][0].compute_score.remote(e, {"prompt": "q", "response": "r score=5"}), timeout=60)
    assert o["ra_error"] == "group_timeout" and o["score"] == 0.0, o
