"""rewardanything_rs.verl, called as veRL 0.8-0.9 calls custom reward functions: keyword
arguments data_source, solution_str, ground_truth, extra_info (per-sample managers and
the reward loop, which awaits coroutine functions), and data_sources, solution_strs,
ground_truths, extra_infos (the batch manager)."""

from __future__ import annotations

import asyncio

import pytest

from rewardanything_rs import verl


def info(prompt="Q", principle="P", **extra):
    d = {"prompt": prompt, "principle": principle, "index": 0, "num_turns": None, "rollout_reward_scores": {}}
    d.update(extra)
    return d


def without_reasoning(out):
    out = dict(out)
    reasoning = out.pop("ra_reasoning")
    assert reasoning.startswith("[shown as model-1]\n"), reasoning
    return out


def test_compute_score(env_client):
    out = verl.compute_score(data_source="ds", solution_str="ans score=4", ground_truth="gt", extra_info=info())
    assert without_reasoning(out) == {"score": 4.0, "ra_consistent": True, "ra_error": ""}
    # "question" instead of "prompt", the principle from RA_PRINCIPLE, a chat prompt.
    import os

    os.environ["RA_PRINCIPLE"] = "env principle"
    try:
        out = verl.compute_score(
            data_source="ds", solution_str="score=2", ground_truth=None,
            extra_info={"question": [{"role": "user", "content": "Q"}]},
        )
        assert out["score"] == 2.0
    finally:
        del os.environ["RA_PRINCIPLE"]
    with pytest.raises(ValueError, match="principle"):
        verl.compute_score(data_source="ds", solution_str="x", ground_truth=None, extra_info={"prompt": "Q"})
    with pytest.raises(ValueError, match="prompt"):
        verl.compute_score(data_source="ds", solution_str="x", ground_truth=None, extra_info={"principle": "P"})
    assert env_client.stop()["chat_requests"] == 2


def test_failure_and_normalization(env_client, monkeypatch):
    monkeypatch.setenv("RA_FAILURE_REWARD", "-1")
    out = verl.compute_score("ds", "x", None, info(prompt="[[fault:400]]"))
    assert without_reasoning(out) == {"score": -1.0, "ra_consistent": False, "ra_error": "http_status"}
    monkeypatch.setenv("RA_NORMALIZE", "unit")
    assert verl.compute_score("ds", "score=5", None, info())["score"] == 1.0


def test_compute_score_batch_groups_by_prompt(env_client):
    prompts = ["Q1"] * 4 + ["Q2"] * 4
    scores = [5, 1, 3, 4, 2, 2, 5, 1]
    out = verl.compute_score_batch(
        data_sources=["ds"] * 8,
        solution_strs=[f"r{i} score={s}" for i, s in enumerate(scores)],
        ground_truths=[None] * 8,
        extra_infos=[info(prompt=p) for p in prompts],
    )
    assert [o["score"] for o in out] == [float(s) for s in scores]
    assert all(o["ra_error"] == "" and o["ra_consistent"] for o in out)
    assert env_client.stop()["chat_requests"] == 2


def test_compute_score_async_coalesces_concurrent_calls(env_client, monkeypatch):
    monkeypatch.setenv("RA_COALESCE_MS", "200")
    assert asyncio.iscoroutinefunction(verl.compute_score_async)

    async def main():
        same = [
            verl.compute_score_async(data_source="ds", solution_str=f"r{i} score={i % 5 + 1}", ground_truth=None, extra_info=info())
            for i in range(10)
        ]
        other = [verl.compute_score_async("ds", "score=3", None, info(prompt="other"))]
        return await asyncio.gather(*same, *other)

    out = asyncio.run(main())
    assert [o["score"] for o in out] == [float(i % 5 + 1) for i in range(10)] + [3.0]
    # 10 sharing a prompt: groups of 8 and 2; the other prompt alone: 3 calls.
    assert env_client.stop()["chat_requests"] == 3


def test_compute_score_async_failure(env_client):
    async def main():
        return await asyncio.gather(*[verl.compute_score_async("ds", "x", None, info(prompt="[[fault:400]]")) for _ in range(2)])

    for o in asyncio.run(main()):
        reasoning = o.pop("ra_reasoning")
        assert reasoning.startswith("[shown as model-") and "error: http_status" in reasoning, reasoning
        assert o == {"score": 0.0, "ra_consistent": False, "ra_error": "http_status"}
