"""rewardanything_rs.trl.reward_function, called exactly as TRL's GRPOTrainer calls
reward functions (TRL 1.10-1.16: keyword arguments prompts, completions,
completion_ids, trainer_state, log_extra, log_metric and the dataset columns; async
functions awaited on TRL's own loop in a background thread)."""

from __future__ import annotations

import asyncio
import inspect
import math
import threading

import pytest

from rewardanything_rs import Client
from rewardanything_rs.trl import reward_function


class Logs:
    def __init__(self):
        self.extra = {}
        self.metrics = {}

    def log_extra(self, column, values):
        self.extra.setdefault(column, []).extend(values)

    def log_metric(self, name, value):
        self.metrics.setdefault(name, []).append(value)


def trl_call(f, prompts, completions, logs=None, **columns):
    """A call shaped like GRPOTrainer._calculate_rewards."""
    logs = logs or Logs()
    kwargs = dict(
        prompts=prompts,
        completions=completions,
        completion_ids=[[1, 2, 3] for _ in completions],
        trainer_state=object(),
        log_extra=logs.log_extra,
        log_metric=logs.log_metric,
        **columns,
    )
    if inspect.iscoroutinefunction(f):
        # TRL: asyncio.run_coroutine_threadsafe(..., self.async_loop) on a loop thread.
        loop = asyncio.new_event_loop()
        t = threading.Thread(target=loop.run_forever, daemon=True)
        t.start()
        try:
            return asyncio.run_coroutine_threadsafe(f(**kwargs), loop).result(timeout=60)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            t.join()
    return f(**kwargs)


SCORES = [5, 1, 3, 4, 2, 2, 5, 1]


def test_plain_format_one_call_per_group(mock):
    f = reward_function(Client(mock.url), "Prefer correct answers.")
    assert f.__name__ == "rewardanything"
    prompts = ["Q1"] * 4 + ["Q2"] * 4
    completions = [f"answer {i} score={s}" for i, s in enumerate(SCORES)]
    logs = Logs()
    rewards = trl_call(f, prompts, completions, logs, extra_column=list(range(8)))
    assert rewards == [float(s) for s in SCORES]
    assert mock.stop()["chat_requests"] == 2  # one listwise call per GRPO group
    reasoning = logs.extra["ra_reasoning"]
    assert len(reasoning) == 8
    # Each group's call judged its 4 responses together.
    assert all(r.count("deserves") == 4 for r in reasoning)
    assert logs.metrics["ra_error_rate"] == [0.0]
    assert len(logs.metrics["ra_latency_ms"]) == 1


def test_groups_are_cut_in_chunks_of_8(mock):
    f = reward_function(Client(mock.url), "p")
    completions = [f"c{i} score={i % 5 + 1}" for i in range(10)]
    logs = Logs()
    rewards = trl_call(f, ["same"] * 10, completions, logs)
    assert rewards == [float(i % 5 + 1) for i in range(10)]
    assert mock.stop()["chat_requests"] == 2
    assert [r.count("deserves") for r in logs.extra["ra_reasoning"]] == [8] * 8 + [2] * 2


def test_conversational_format(mock):
    f = reward_function(Client(mock.url), "p", name="ra_judge")
    assert f.__name__ == "ra_judge"
    prompts = [[{"role": "system", "content": "You help."}, {"role": "user", "content": "Q"}]] * 3
    completions = [[{"role": "assistant", "content": f"reply score={s}"}] for s in (2, 5, 4)]
    assert trl_call(f, prompts, completions) == [2.0, 5.0, 4.0]
    # Content given as parts (TRL's multimodal form) is read too.
    parts = [[{"role": "assistant", "content": [{"type": "text", "text": f"r score={s}"}]}] for s in (1, 3)]
    assert trl_call(f, [[{"role": "user", "content": [{"type": "text", "text": "Q"}]}]] * 2, parts) == [1.0, 3.0]
    assert mock.stop()["chat_requests"] == 2


def test_principle_column_overrides_per_sample(mock):
    f = reward_function(Client(mock.url), "default principle")
    prompts = ["Q"] * 4
    completions = ["score=1", "score=2", "score=3", "score=4"]
    rewards = trl_call(f, prompts, completions, principle=["A", "A", None, "B"])
    assert rewards == [1.0, 2.0, 3.0, 4.0]
    # Same prompt, three principles (A, the default for None, B): three calls.
    assert mock.stop()["chat_requests"] == 3
    g = reward_function(Client("http://127.0.0.1:9/v1"))
    with pytest.raises(ValueError, match="no principle for completion 0"):
        trl_call(g, ["Q"], ["x"])


def test_failures_and_normalization(mock):
    client = Client(mock.url, max_retries=0)
    prompts = ["good"] * 2 + ["[[fault:400]]"] * 2
    completions = ["score=5", "score=1", "x", "y"]
    logs = Logs()
    assert trl_call(reward_function(client, "p"), prompts, completions, logs) == [5.0, 1.0, 0.0, 0.0]
    assert logs.metrics["ra_error_rate"] == [0.5]
    assert logs.extra["ra_reasoning"][2].split("\n")[1].startswith("error: http_status")
    assert trl_call(reward_function(client, "p", failure_reward=None), prompts, completions) == [5.0, 1.0, None, None]
    nan = trl_call(reward_function(client, "p", failure_reward=float("nan")), prompts, completions)
    assert math.isnan(nan[2])
    assert trl_call(reward_function(client, "p", normalize="unit"), prompts[:2], completions[:2]) == [1.0, 0.0]
    # centered: the fixed (s-3)/2; group: unit minus the group's mean.
    assert trl_call(reward_function(client, "p", normalize="centered"), prompts[:2], completions[:2]) == [1.0, -1.0]
    assert trl_call(reward_function(client, "p", normalize="group"), prompts[:2], completions[:2]) == [0.5, -0.5]
    # Without log_extra/log_metric (older TRL), nothing is logged and nothing breaks.
    f = reward_function(client, "p")
    assert f(prompts[:2], completions[:2]) == [5.0, 1.0]


def test_asynchronous(mock):
    f = reward_function(Client(mock.url), "p", asynchronous=True, name="ra_async")
    assert inspect.iscoroutinefunction(f) and f.__name__ == "ra_async"
    prompts = ["Q1"] * 3 + ["Q2"] * 3
    completions = [f"score={s}" for s in (1, 2, 3, 4, 5, 1)]
    logs = Logs()
    assert trl_call(f, prompts, completions, logs) == [1.0, 2.0, 3.0, 4.0, 5.0, 1.0]
    assert len(logs.extra["ra_reasoning"]) == 6
    assert mock.stop()["chat_requests"] == 2


def test_bad_arguments():
    client = Client("http://127.0.0.1:9/v1")
    with pytest.raises(ValueError, match="normalize"):
        reward_function(client, "p", normalize="zscore")
    with pytest.raises(TypeError, match="client"):
        reward_function("http://x", "p")
    with pytest.raises(TypeError, match="failure_reward"):
        reward_function(client, "p", failure_reward="0")
    f = reward_function(client, "p")
    with pytest.raises(ValueError, match="2 prompts for 3 completions"):
        f(["a", "b"], ["x", "y", "z"])
    with pytest.raises(TypeError, match=r"completions\[1\]"):
        f(["a", "b"], ["x", 5])


def test_identical_completions_stay_distinct(mock):
    f = reward_function(Client(mock.url), "p")
    logs = Logs()
    assert trl_call(f, ["Q"] * 3, ["same score=3"] * 3, logs) == [3.0, 3.0, 3.0]
    assert [r.count("deserves") for r in logs.extra["ra_reasoning"]] == [3, 3, 3]
    assert mock.stop()["chat_requests"] == 1
    with pytest.raises(TypeError, match=r"prompts\[1\]"):
        f(["Q", None], ["a", "b"])
