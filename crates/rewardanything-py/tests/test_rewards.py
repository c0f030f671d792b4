"""Reward integrity through each framework's calling convention (issue 16 §1): one
meaning per normalization name (``centered`` the fixed (s-3)/2 as in ``ra gateway
--reward``, ``group`` the group-mean centering, refused without a group, never a
constant 0); logged reasoning that names the masked name each completion was shown as;
duplicate response names refused."""

from __future__ import annotations

import asyncio
import json
import re

import pytest

from rewardanything_rs import Client, RewardResult
from rewardanything_rs import openrlhf, verl
from rewardanything_rs._native import NORMALIZATIONS, normalize
from rewardanything_rs.trl import reward_function

from test_openrlhf import CHATML_PROMPT, load_like_openrlhf
from test_trl import Logs, trl_call


def test_the_names_are_the_rust_clients():
    assert NORMALIZATIONS == ("raw", "unit", "centered", "group")
    assert normalize([1.0, 3.0, 4.0, 5.0], "centered") == [-1.0, 0.0, 0.5, 1.0]
    assert normalize([1.0, 5.0], "group") == [-0.5, 0.5]
    with pytest.raises(ValueError, match="group"):
        normalize([4.0], "group")
    with pytest.raises(ValueError, match="midpoint"):
        normalize([4.0], "midpoint")


def openrlhf_reward_func(tmp_path):
    path = tmp_path / "ra_reward.py"
    path.write_text("from rewardanything_rs.openrlhf import reward_func  # noqa: F401\n")
    return load_like_openrlhf(path)


def one_rollout_each(reward_func, responses):
    """OpenRLHF 0.11: one rollout per call, from worker threads."""

    async def calls():
        return await asyncio.gather(
            *[asyncio.to_thread(reward_func, [CHATML_PROMPT + r + "<|im_end|>"], [CHATML_PROMPT], [None]) for r in responses]
        )

    return asyncio.run(calls())


def test_centered_is_the_fixed_map_on_one_rollout_at_a_time(env_client, tmp_path, monkeypatch):
    reward_func = openrlhf_reward_func(tmp_path)
    monkeypatch.setenv("RA_PRINCIPLE", "Be correct.")
    monkeypatch.setenv("RA_NORMALIZE", "centered")
    out = one_rollout_each(reward_func, ["a score=1", "b score=4", "c score=4"])
    assert [o["scores"][0] for o in out] == [1.0, 4.0, 4.0]
    assert [o["rewards"][0] for o in out] == [-1.0, 0.5, 0.5]
    assert all(o["extra_logs"]["ra_failed"] == [0.0] for o in out)
    # veRL's per-sample function: the same map.
    got = [verl.compute_score("ds", f"score={s}", None, {"prompt": "Q", "principle": "P"})["score"] for s in (1, 4, 5)]
    assert got == [-1.0, 0.5, 1.0]


def test_a_failed_judgment_never_pays_more_than_the_worst_answer(env_client, tmp_path, monkeypatch):
    """With centered, a failure reward of 0.0 (the midpoint) would pay a policy to break
    its judgment: the default is the lowest reward, a larger one is warned about."""
    reward_func = openrlhf_reward_func(tmp_path)
    monkeypatch.setenv("RA_PRINCIPLE", "Be correct.")
    monkeypatch.setenv("RA_NORMALIZE", "centered")
    monkeypatch.delenv("RA_FAILURE_REWARD", raising=False)
    # The mock fails a judgment whose question carries the marker.
    faulty = CHATML_PROMPT.replace("What is 2+2?", "What is 2+2? [[fault:400]]")

    def fail_once():
        return reward_func([faulty + "b<|im_end|>"], [faulty], [None])

    (worst,) = one_rollout_each(reward_func, ["a score=1"])
    assert worst["rewards"] == [-1.0] and worst["extra_logs"]["ra_failed"] == [0.0]
    failed = fail_once()
    assert failed["extra_logs"]["ra_failed"] == [1.0], failed
    assert failed["rewards"] == [-1.0], failed
    got = verl.compute_score("ds", "b", None, {"prompt": "Q [[fault:400]]", "principle": "P"})
    assert got["score"] == -1.0 and got["ra_error"], got
    monkeypatch.setenv("RA_FAILURE_REWARD", "0.5")
    with pytest.warns(RuntimeWarning, match="RA_FAILURE_REWARD=0.5 is above the lowest reward"):
        failed = fail_once()
    assert failed["rewards"] == [0.5]
    # TRL: the default follows the normalization; an explicit larger value is warned about.
    client = Client(env_client.url)
    with pytest.warns(RuntimeWarning, match="failure_reward=0.0 is above"):
        reward_function(client, "P", normalize="centered", failure_reward=0.0)


def test_group_is_refused_where_there_is_no_group(env_client, tmp_path, monkeypatch):
    reward_func = openrlhf_reward_func(tmp_path)
    monkeypatch.setenv("RA_PRINCIPLE", "Be correct.")
    monkeypatch.setenv("RA_NORMALIZE", "group")
    # OpenRLHF's one-rollout calls are coalesced: one that met no other is judged and
    # refused its group reward (never a constant 0).
    out = reward_func([CHATML_PROMPT + "a score=5"], [CHATML_PROMPT], [None])
    assert out["ra_error"] == ["no_group"] and out["extra_logs"]["ra_failed"] == [1.0]
    # Per-sample calls: an error naming the setting, before anything is judged.
    with pytest.raises(ValueError, match="RA_NORMALIZE=group.*one completion per call"):
        verl.compute_score("ds", "score=5", None, {"prompt": "Q", "principle": "P"})
    monkeypatch.setenv("RA_NORMALIZE", "centred")
    with pytest.raises(ValueError, match="RA_NORMALIZE must be one of"):
        verl.compute_score("ds", "score=5", None, {"prompt": "Q", "principle": "P"})
    monkeypatch.setenv("RA_NORMALIZE", "group")
    assert env_client.stop()["chat_requests"] == 1


def test_a_group_of_one_in_a_batch_fails_alone(env_client, tmp_path, monkeypatch):
    monkeypatch.setenv("RA_PRINCIPLE", "Be correct.")
    monkeypatch.setenv("RA_NORMALIZE", "group")
    monkeypatch.setenv("RA_FAILURE_REWARD", "-7")
    lone = CHATML_PROMPT.replace("2+2", "3+3")
    # OpenRLHF before 0.11 batched: two rollouts of one question, one of another.
    out = openrlhf_reward_func(tmp_path)(
        [CHATML_PROMPT + "a score=5", CHATML_PROMPT + "b score=1", lone + "c score=4"],
        [CHATML_PROMPT, CHATML_PROMPT, lone],
        [None] * 3,
    )
    assert out["rewards"] == [0.5, -0.5, -7.0]
    assert out["scores"][:2] == [5.0, 1.0]
    assert out["extra_logs"]["ra_failed"] == [0.0, 0.0, 1.0]
    # veRL's batch function: the lone sample fails with a reason.
    infos = [{"prompt": p, "principle": "P"} for p in ("Q", "Q", "lone")]
    res = verl.compute_score_batch(["ds"] * 3, ["score=5", "score=1", "score=4"], [None] * 3, infos)
    assert [r["score"] for r in res] == [0.5, -0.5, -7.0]
    assert [r["ra_error"] for r in res] == ["", "", "no_group"]
    assert "needs a group of at least 2" in res[2]["ra_reasoning"]
    # veRL's reward loop: a sample nobody coalesced with fails the same way.
    monkeypatch.setenv("RA_COALESCE_MS", "1")
    alone = asyncio.run(verl.compute_score_async("ds", "score=4", None, {"prompt": "alone", "principle": "P"}))
    assert alone["score"] == -7.0 and alone["ra_error"] == "no_group"
    # TRL: a prompt with one completion gets the failure reward, and says why.
    logs = Logs()
    f = reward_function(Client(env_client.url), "p", normalize="group", failure_reward=None)
    assert trl_call(f, ["Q", "Q", "lone"], ["score=5", "score=1", "score=4"], logs) == [0.5, -0.5, None]
    assert "no_group" in logs.extra["ra_reasoning"][2]
    assert logs.metrics["ra_error_rate"] == [pytest.approx(1 / 3)]


SHOWN = re.compile(r"\A\[shown as (model-\d+)\]\n")


def check_names(texts, scores):
    """Each text names its own masked name, and the mock's reasoning (which says
    ``model-k deserves N.`` for what it saw as model-k) gives that name the
    completion's own score: the mapping is the one the mock saw."""
    shown = []
    for text, score in zip(texts, scores):
        m = SHOWN.match(text)
        assert m, text
        assert f"{m.group(1)} deserves {score}." in text, text
        shown.append(m.group(1))
    assert sorted(shown) == [f"model-{k}" for k in range(1, len(scores) + 1)]
    # The reference shuffle of 4 is not the identity: positions really differ.
    assert shown != [f"model-{k}" for k in range(1, len(scores) + 1)]


def test_logged_reasoning_names_each_completions_masked_name(env_client):
    scores = [5, 2, 4, 1]
    completions = [f"answer {i} score={s}" for i, s in enumerate(scores)]
    for asynchronous in (False, True):
        logs = Logs()
        f = reward_function(Client(env_client.url), "p", asynchronous=asynchronous)
        assert trl_call(f, ["Q"] * 4, completions, logs) == [float(s) for s in scores]
        check_names(logs.extra["ra_reasoning"], scores)
    out = verl.compute_score_batch(["ds"] * 4, completions, [None] * 4, [{"prompt": "Q", "principle": "P"}] * 4)
    check_names([o["ra_reasoning"] for o in out], scores)
    # The mapping itself, for other callers.
    r = Client(env_client.url).judge("p", "q", {"a": "score=1", "b": "score=2"})
    assert r.shown_as == {"a": "model-2", "b": "model-1"}
    assert "model-2 deserves 1." in r.reasoning
    unmasked = Client(env_client.url, masking="none").judge("p", "q", {"a": "score=1"})
    assert unmasked.shown_as == {"a": "a"}


def test_openrlhf_logs_the_reasoning_with_the_shown_name(env_client, tmp_path, monkeypatch, caplog):
    monkeypatch.setenv("RA_PRINCIPLE", "Be correct.")
    scores = [5, 2, 4, 1]
    with caplog.at_level("DEBUG", logger="rewardanything_rs.openrlhf"):
        openrlhf_reward_func(tmp_path)([CHATML_PROMPT + f"r{s} score={s}" for s in scores], [CHATML_PROMPT] * 4, [None] * 4)
    texts = [r.getMessage().split(": ", 1)[1] for r in caplog.records if r.name == "rewardanything_rs.openrlhf"]
    check_names(texts, scores)


class Distinct(str):
    """Equal text, never equal hashes: two keys in one dict."""

    def __hash__(self):
        return id(self)

    def __eq__(self, other):
        return self is other


def test_two_keys_with_equal_text_are_refused(mock):
    responses = {Distinct("a"): "score=1", Distinct("a"): "score=5"}
    assert len(responses) == 2
    client = Client(mock.url)
    with pytest.raises(ValueError, match='two keys with the text "a"'):
        client.judge("p", "q", responses)
    with pytest.raises(ValueError, match=r"requests\[0\]\.responses has two keys"):
        client.judge_batch([{"principle": "p", "prompt": "q", "responses": responses}])
    assert mock.stop()["chat_requests"] == 0


def test_result_dict_has_the_mapping(mock):
    r = Client(mock.url).judge("p", "q", ["score=3"])
    assert isinstance(r, RewardResult)
    assert json.loads(json.dumps(r.to_dict()))["shown_as"] == {"response-1": "model-1"}
