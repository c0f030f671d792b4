"""The environment as the Python package reads it: through the Rust client's ``env``
module, the same parsing and words as ``ra`` (RA_ENDPOINT lists, typed errors naming the
variable and the entry, a given setting before the variable before the default)."""

from __future__ import annotations

import pytest

from rewardanything_rs import Client, verl
from rewardanything_rs import _common

# ra-cli's tests/judge_score.rs pins the same text for `ra score`.
BAD_SECOND_ENTRY = "RA_ENDPOINT: entry 2 (nope) is not an endpoint: no scheme"


def info(prompt: str) -> dict:
    return {"prompt": prompt, "principle": "P"}


def test_ra_endpoint_list_reaches_every_endpoint_through_verl(env_client, start_mock, monkeypatch):
    other = start_mock()
    # Whitespace around entries and a trailing comma are tolerated, as by `ra`.
    monkeypatch.setenv("RA_ENDPOINT", f" {env_client.url} ,\t{other.url}, ")
    assert Client().endpoints == [env_client.url, other.url]
    out = verl.compute_score_batch(
        data_sources=["d"] * 6,
        solution_strs=["score=4"] * 6,
        ground_truths=[None] * 6,
        extra_infos=[info(f"Q{i}") for i in range(6)],
    )
    assert [o["score"] for o in out] == [4.0] * 6
    served = (env_client.stop()["chat_requests"], other.stop()["chat_requests"])
    assert served[0] > 0 and served[1] > 0 and sum(served) == 6, served


def test_a_bad_ra_endpoint_entry_is_a_typed_error_naming_it(env_client, monkeypatch):
    monkeypatch.setenv("RA_ENDPOINT", f"{env_client.url},nope")
    with pytest.raises(ValueError) as e:
        Client()
    assert BAD_SECOND_ENTRY in str(e.value)
    with pytest.raises(ValueError, match=r"RA_ENDPOINT: entry 2 \(nope\)"):
        verl.compute_score("d", "score=4", None, info("Q"))
    # Passwords in a bad entry are not echoed.
    monkeypatch.setenv("RA_ENDPOINT", "ftp://user:secret@h/v1")
    with pytest.raises(ValueError) as e:
        Client()
    assert "secret" not in str(e.value) and "entry 1" in str(e.value)
    monkeypatch.setenv("RA_ENDPOINT", " , ")
    with pytest.raises(ValueError, match="RA_ENDPOINT lists no endpoint"):
        Client()
    assert env_client.stop()["chat_requests"] == 0


def test_precedence_given_then_variable_then_default(monkeypatch):
    # A given endpoint wins, and a broken variable is then never read.
    monkeypatch.setenv("RA_ENDPOINT", "nope")
    assert Client("http://127.0.0.1:1/v1").endpoints == ["http://127.0.0.1:1/v1"]
    monkeypatch.setenv("RA_ENDPOINT", "http://127.0.0.1:2/v1")
    assert Client().endpoints == ["http://127.0.0.1:2/v1"]
    monkeypatch.setenv("RA_ENDPOINT", "  ")
    assert Client().endpoints == ["http://127.0.0.1:8000/v1"]
    monkeypatch.delenv("RA_ENDPOINT")
    assert Client().endpoints == ["http://127.0.0.1:8000/v1"]


@pytest.mark.parametrize(
    "name, value, words",
    [
        ("RA_COALESCE_MS", "fifty", "RA_COALESCE_MS must be milliseconds"),
        ("RA_COALESCE_MS", "-1", "RA_COALESCE_MS must be milliseconds"),
        ("RA_MAX_GROUP_SIZE", "0", "RA_MAX_GROUP_SIZE must be a whole number of at least 1"),
        ("RA_MAX_GROUP_SIZE", "eight", "RA_MAX_GROUP_SIZE must be a whole number"),
        ("RA_FAILURE_REWARD", "inf", "RA_FAILURE_REWARD must be a finite number"),
        ("RA_NORMALIZE", "centred", "RA_NORMALIZE must be one of"),
    ],
)
def test_a_bad_reward_setting_names_its_variable(env_client, monkeypatch, name, value, words):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=words):
        asyncio_run(verl.compute_score_async("d", "score=4", None, info("Q")))
    assert env_client.stop()["chat_requests"] == 0


def asyncio_run(coro):
    import asyncio

    return asyncio.run(coro)


def test_reward_settings_and_the_failure_rule_come_from_rust(monkeypatch):
    for name in ("RA_PRINCIPLE", "RA_NORMALIZE", "RA_FAILURE_REWARD", "RA_COALESCE_MS", "RA_MAX_GROUP_SIZE", "RA_MODEL", "RA_GROUP_SIZE"):
        monkeypatch.delenv(name, raising=False)
    env = _common.reward_env()
    assert env == _common.RewardEnv(None, None, "raw", 0.0, 0.05, 8, None)
    # A complete group's size: the window then only bounds stragglers (10 s by default).
    monkeypatch.setenv("RA_GROUP_SIZE", "4")
    env = _common.reward_env()
    assert (env.expected_group_size, env.coalesce_window) == (4, 10.0)
    monkeypatch.setenv("RA_GROUP_SIZE", "0")
    with pytest.raises(ValueError, match="RA_GROUP_SIZE"):
        _common.reward_env()
    monkeypatch.delenv("RA_GROUP_SIZE")
    monkeypatch.setenv("RA_NORMALIZE", " centered ")
    monkeypatch.setenv("RA_COALESCE_MS", "12.5")
    monkeypatch.setenv("RA_MODEL", "served")
    env = _common.reward_env()
    assert (env.normalize, env.failure_reward, env.coalesce_window, env.model) == ("centered", -1.0, 0.0125, "served")
    # The rule "failing never pays": min(0, the lowest judged reward), per normalization.
    assert [_common.default_failure_reward(n) for n in ("raw", "unit", "centered", "group")] == [0.0, 0.0, -1.0, -1.0]
    assert [_common.lowest_reward(n) for n in ("raw", "unit", "centered", "group")] == [1.0, 0.0, -1.0, -1.0]
