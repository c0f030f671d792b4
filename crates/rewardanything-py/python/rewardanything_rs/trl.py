"""TRL reward functions (``GRPOTrainer(reward_funcs=...)``).

TRL (checked against 1.10-1.16) calls a reward function as::

    f(prompts=[...], completions=[...], completion_ids=[...], trainer_state=...,
      log_extra=..., log_metric=..., **dataset_columns) -> list[float | None]

with one entry per completion; ``None`` becomes NaN, which TRL ignores. Async reward
functions (``async def``) are awaited concurrently on TRL's own event loop.
"""

from __future__ import annotations

import math
from typing import Any, Callable, List, Optional, Sequence, Tuple, Union

from . import _common
from . import Client


class _Plan:
    """The listwise calls for one batch of completions."""

    def __init__(self, requests: List[dict], chunks: List[List[int]], keys: List[tuple], n: int):
        self.requests = requests
        self.chunks = chunks
        self.keys = keys
        self.n = n


def _principles(default: Optional[str], column: Any, n: int) -> List[str]:
    if column is not None and (not isinstance(column, (list, tuple)) or len(column) != n):
        raise ValueError(f"the 'principle' column must be a list of {n} str (one per completion)")
    out = []
    for i in range(n):
        p = column[i] if column is not None and column[i] is not None else default
        if p is None:
            raise ValueError(
                f"no principle for completion {i}: pass principle= or a 'principle' dataset column"
            )
        if not isinstance(p, str):
            raise TypeError(f"principle[{i}] must be a str, not {type(p).__name__}")
        out.append(p)
    return out


def _plan(default_principle: Optional[str], prompts: Any, completions: Any, kwargs: dict, max_group: int) -> _Plan:
    if not isinstance(prompts, (list, tuple)) or not isinstance(completions, (list, tuple)):
        raise TypeError("prompts and completions must be lists")
    n = len(completions)
    if len(prompts) != n:
        raise ValueError(f"{len(prompts)} prompts for {n} completions: expected one prompt per completion")
    principles = _principles(default_principle, kwargs.get("principle"), n)
    prompt_texts = [_common.prompt_text(p, f"prompts[{i}]") for i, p in enumerate(prompts)]
    texts = [_common.completion_text(c, f"completions[{i}]") for i, c in enumerate(completions)]
    keys = list(zip(principles, prompt_texts))
    chunks = _common.group_indices(keys, max_group)
    requests = [
        {
            "principle": keys[chunk[0]][0],
            "prompt": keys[chunk[0]][1],
            "responses": {_common.response_name(k): texts[i] for k, i in enumerate(chunk)},
        }
        for chunk in chunks
    ]
    return _Plan(requests, chunks, keys, n)


def _finish(plan: _Plan, results: Sequence[Any], normalize: str, failure_reward: Optional[float], kwargs: dict) -> List[Optional[float]]:
    raw, per_sample, names = _common.spread(plan.chunks, results, plan.n)
    rewards, errors = _common.normalize_groups(raw, plan.keys, normalize)
    out = [failure_reward if r is None else r for r in rewards]
    log_extra = kwargs.get("log_extra")
    if callable(log_extra):
        log_extra(
            "ra_reasoning",
            [_common.logged_reasoning(r, name, e) for r, name, e in zip(per_sample, names, errors)],
        )
    log_metric = kwargs.get("log_metric")
    if callable(log_metric) and plan.n:
        failed = sum(1 for r in rewards if r is None)
        log_metric("ra_error_rate", failed / plan.n)
        if results:
            log_metric("ra_latency_ms", math.fsum(r.latency_ms for r in results) / len(results))
    return out


def reward_function(
    client: Client,
    principle: Optional[str] = None,
    *,
    normalize: str = "raw",
    failure_reward: Union[float, None, str] = "lowest",
    asynchronous: bool = False,
    max_group_size: int = _common.MAX_GROUP_SIZE,
    name: str = "rewardanything",
) -> Callable[..., Any]:
    """A TRL reward function ``f(prompts, completions, **kwargs) -> list[float]``.

    * ``prompts``/``completions``: plain strings, or conversational lists of
      ``{"role", "content"}`` messages (TRL's two formats).
    * Completions sharing a prompt (a GRPO group) are judged together in one listwise
      call (chunks of at most ``max_group_size``, default 8); each gets its own score.
    * A ``principle`` dataset column (TRL passes columns as keyword arguments)
      overrides ``principle`` per sample.
    * ``normalize``: ``"raw"`` (1-5), ``"unit"`` ((s-1)/4), ``"centered"`` (the fixed
      (s-3)/2) or ``"group"`` ((s-1)/4 minus the mean of the completions of the same
      prompt in the batch). ``failure_reward`` is returned for a failed judgment
      (``None``: TRL turns it into NaN and ignores it; ``"lowest"``, the default: 0.0, or
      -1.0 for centered and group, never above the worst judged reward, so a policy
      never earns more by failing its judgment; a larger value is warned about), and with ``"group"`` for a
      completion whose prompt has fewer than two scored completions (never a constant 0).
    * With TRL's ``log_extra``/``log_metric``, logs the judge's reasoning per completion
      (column ``ra_reasoning``, its first line ``[shown as model-k]``: the masked name
      the judge saw that completion under) and the metrics ``ra_error_rate`` and
      ``ra_latency_ms``.
    * ``asynchronous=True`` returns an ``async def`` function (TRL awaits it on its loop).

    The function's ``__name__`` is ``name``, so TRL logs the reward under it.
    """
    if not isinstance(client, Client):
        raise TypeError(f"client must be a rewardanything_rs.Client, not {type(client).__name__}")
    if principle is not None and not isinstance(principle, str):
        raise TypeError(f"principle must be a str or None, not {type(principle).__name__}")
    _common.check_normalize(normalize)
    if failure_reward == "lowest":
        failure_reward = _common.default_failure_reward(normalize)
    failure_reward = _common.check_failure_reward(failure_reward)
    _common.warn_if_failure_pays(failure_reward, normalize, "failure_reward")
    if isinstance(max_group_size, bool) or not isinstance(max_group_size, int) or max_group_size < 1:
        raise ValueError(f"max_group_size must be an int >= 1, not {max_group_size!r}")

    if asynchronous:

        async def reward_func(prompts: Any, completions: Any, **kwargs: Any) -> List[Optional[float]]:
            plan = _plan(principle, prompts, completions, kwargs, max_group_size)
            results = await client.ajudge_batch(plan.requests) if plan.requests else []
            return _finish(plan, results, normalize, failure_reward, kwargs)

    else:

        def reward_func(prompts: Any, completions: Any, **kwargs: Any) -> List[Optional[float]]:  # type: ignore[misc]
            plan = _plan(principle, prompts, completions, kwargs, max_group_size)
            results = client.judge_batch(plan.requests) if plan.requests else []
            return _finish(plan, results, normalize, failure_reward, kwargs)

    reward_func.__name__ = name
    reward_func.__qualname__ = name
    return reward_func


__all__: Tuple[str, ...] = ("reward_function",)
