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


# veRL 0.9.1 with its own reward-model servers (`reward.reward_model.enable`): the reward
# loop's `naive` manager passes `reward_router_address` (host:port, an IPv6 host
# bracketed) and `reward_model_tokenizer` to the custom reward function, only when there
# is a router; a coroutine function is awaited, another runs in the loop's executor.
async def run_single_as_verl(fn, reward_router_address, **sample):
    import functools
    import inspect

    extra = {}
    if reward_router_address is not None:
        extra = {"reward_router_address": reward_router_address, "reward_model_tokenizer": object()}
    if inspect.iscoroutinefunction(fn):
        return await fn(**sample, **extra)
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(None, functools.partial(fn, **sample, **extra))


def load_custom_reward_function(tmp_path, name):
    """As veRL's `custom_reward_function.path`/`.name`: a file imported by path, the
    function taken by name and wrapped to merge `reward_kwargs` (none here)."""
    import importlib.util
    import inspect

    path = tmp_path / "ra_reward.py"
    path.write_text(f"from rewardanything_rs.verl import {name}\n")
    spec = importlib.util.spec_from_file_location("ra_reward", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    raw = getattr(module, name)
    if inspect.iscoroutinefunction(raw):

        async def wrapped(*args, **kwargs):
            return await raw(*args, **kwargs)

    else:

        def wrapped(*args, **kwargs):
            return raw(*args, **kwargs)

    return wrapped


def router_address(mock):
    assert mock.url.startswith("http://") and mock.url.endswith("/v1"), mock.url
    return mock.url[len("http://") : -len("/v1")]


@pytest.mark.parametrize("name", ["compute_score_async", "compute_score"])
@pytest.mark.parametrize("host", ["127.0.0.1", "::1"])
def test_reward_router_address_is_the_judge(env_client, start_mock, tmp_path, monkeypatch, name, host):
    # RA_ENDPOINT names another server than the router: calls with the address go to the router.
    router = start_mock(host=host)
    address = router_address(router)
    if host == "::1":
        assert address.startswith("[::1]:"), address
    fn = load_custom_reward_function(tmp_path, name)

    async def main():
        calls = [
            run_single_as_verl(
                fn, address, data_source="ds", solution_str=f"r{i} score={i % 5 + 1}", ground_truth=None, extra_info=info()
            )
            for i in range(4)
        ]
        return await asyncio.gather(*calls)

    out = asyncio.run(main())
    assert [o["score"] for o in out] == [1.0, 2.0, 3.0, 4.0]
    assert all(o["ra_error"] == "" for o in out), out
    # Without a router (veRL passes nothing), RA_ENDPOINT is used.
    out = asyncio.run(run_single_as_verl(fn, None, data_source="ds", solution_str="score=5", ground_truth=None, extra_info=info()))
    assert out["score"] == 5.0 and out["ra_error"] == "", out
    # The async form judges the group in one call; the blocking one each sample alone.
    assert router.stop()["chat_requests"] == (1 if name == "compute_score_async" else 4)
    assert env_client.stop()["chat_requests"] == 1


def test_router_endpoint_and_bad_addresses():
    assert verl.router_endpoint("10.0.0.7:8000") == "http://10.0.0.7:8000/v1"
    assert verl.router_endpoint("rm-router.svc:80") == "http://rm-router.svc:80/v1"
    assert verl.router_endpoint("[::1]:8000") == "http://[::1]:8000/v1"
    assert verl.router_endpoint("[::1]") == "http://[::1]/v1"
    # A bare IPv6 address is refused: in fe80::1:8000 the port cannot be told apart.
    for bare in ("::1", "fe80::1:8000", "2001:db8::5"):
        with pytest.raises(ValueError, match="bare IPv6"):
            verl.router_endpoint(bare)
    for bad in ("", "host:", "host:http", "host:70000", "http://h:1", "h:1/v1", "[nothost]:1", "[::1]:x", "[fe80::1%eth0]:8000", "[::1]:"):
        with pytest.raises(ValueError):
            verl.router_endpoint(bad)
    with pytest.raises(TypeError):
        verl.router_endpoint(8000)
    # Through the reward function: the sample is not judged, the error names the setting.
    with pytest.raises(ValueError, match="reward_router_address"):
        verl.compute_score("ds", "x", None, info(), reward_router_address="::1")


def test_clients_per_router_address_are_cached_and_bounded(env_client, monkeypatch):
    monkeypatch.setattr(verl, "_clients", None)
    first = verl.get_client("127.0.0.1:9")
    assert verl.get_client("127.0.0.1:9") is first
    assert first.endpoints == ["http://127.0.0.1:9/v1"]
    for port in range(10, 10 + 3 * verl.MAX_CLIENTS):
        verl.get_client(f"127.0.0.1:{port}")
    assert len(verl._clients[1]) == verl.MAX_CLIENTS
    assert verl.get_client("127.0.0.1:9") is not first  # evicted, made anew
