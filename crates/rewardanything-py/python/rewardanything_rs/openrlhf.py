"""OpenRLHF reward function for ``--remote_rm_url path/to/file.py``.

OpenRLHF (0.11) loads ``reward_func`` from that file and calls it in a worker thread as
``reward_func(queries, prompts, labels)`` with one rollout per call, where a query is the
decoded prompt + response with special tokens kept. It reads ``rewards``, ``scores``
and ``extra_logs`` (lists, one entry per query) from the returned dict. A file such as::

    from rewardanything_rs.openrlhf import reward_func  # noqa: F401

is all that is needed. The client comes from ``RA_ENDPOINT``/``RA_API_KEY`` (made once
per process); the principle from a label that is a dict (or JSON text of one) with a
``"principle"`` key, else ``RA_PRINCIPLE``. ``RA_NORMALIZE`` (raw, unit, centered = the
fixed (s-3)/2 as ``ra gateway --reward centered``; default raw) maps the 1-5 score to the
reward and ``RA_FAILURE_REWARD`` (default: 0.0, or -1.0 for centered and group: never
above the worst judged reward, so failing never pays) is given for a failed judgment, flagged in
``extra_logs["ra_failed"]``. ``group`` (unit minus the group's mean) normalizes over the
coalesced group; a rollout judged alone fails (``ra_error`` ``no_group``).

OpenRLHF's ``.py`` route calls ``reward_func`` with one rollout at a time (checked in
0.11.2's ``SingleTurnAgentExecutor``), each caller blocking: such a call joins its GRPO
group through the Rust client's group coalescing, shared by every process of the Ray job
(one named actor, see ``rewardanything_rs._group_actor``; outside Ray, this process's),
so the concurrent calls of one prompt's rollouts are judged in one listwise call. Set
``RA_GROUP_SIZE`` to OpenRLHF's ``--n_samples_per_prompt`` so that a complete group is
sent at once (``RA_COALESCE_MS`` then only bounds the wait for stragglers).

Queries are split by the very code the gateway's ``/get_reward`` runs
(:func:`rewardanything_rs.split_rollout`, from the Rust client library). The judge's
prompt is the prompt's own last user turn (else the prompt as is), never text the policy
wrote; the response is the query after the prompt, found even when a tokenizer round
trip changed whitespace or begin-of-sequence tokens (or cut the prompt's start, as long
as its last user turn is left). Then trailing end-of-turn tokens are cut, then a leading
``<think>...</think>`` block (Qwen3) or the rest of a thought the prompt opened
(DeepSeek-R1). A thought that never closed leaves an empty response, flagged in
``extra_logs["ra_unfinished_think"]``. A rollout with no such boundary (the query does
not hold its prompt; with an empty prompt, it is not a single-turn chat of a ChatML/Qwen,
Llama 3, Gemma or DeepSeek template) is not judged: it gets ``RA_FAILURE_REWARD``,
``extra_logs["ra_failed"] = 1.0`` and its reason in ``ra_error`` (a list beside
``extra_logs``: OpenRLHF turns every ``extra_logs`` value into a tensor, so no text
there), like a failed judgment (whose ``ra_error`` is its kind).
"""

from __future__ import annotations

import logging
from typing import Any, Dict, List, Optional, Sequence, Tuple

from . import _common
from ._native import RolloutSplitError, label_principle, split_rollout, strip_end_of_turn, user_question
from .verl import get_client, grouped_score, judge_grouped

_log = logging.getLogger(__name__)


def cut_response(query: str, prompt: str) -> str:
    """The policy's response inside an OpenRLHF query (prompt + response), its
    end-of-turn tokens and leading think block cut (``split_rollout(query, prompt).response``);
    raises ``RolloutSplitError`` when no trusted boundary exists."""
    return split_rollout(query, prompt).response


def _samples(
    queries: Sequence[str], prompts: Sequence[str], labels: Optional[Sequence[Any]]
) -> Tuple[List[Optional[Tuple[str, str, str]]], List[bool], List[str]]:
    """(principle, question, response) per query (``None`` when it could not be split),
    whether its thought never closed, and why its split failed (``""`` when it did not)."""
    if len(prompts) != len(queries) or (labels is not None and len(labels) != len(queries)):
        raise ValueError("queries, prompts and labels must have the same length")
    default = _common.reward_env(warn=False).principle
    samples: List[Optional[Tuple[str, str, str]]] = []
    unfinished, errors = [], []
    for i, (q, p) in enumerate(zip(queries, prompts)):
        if not isinstance(q, str) or not isinstance(p, str):
            raise TypeError(f"queries[{i}] and prompts[{i}] must be str")
        try:
            principle = label_principle(labels[i] if labels is not None else None) or default
        except ValueError as e:
            raise ValueError(f"labels[{i}]: {e}") from None
        if not principle:
            raise ValueError(f'no principle for query {i}: set RA_PRINCIPLE or a label {{"principle": ...}}')
        try:
            rollout = split_rollout(q, p)
        except RolloutSplitError as e:
            # Never judged on guessed text: this rollout fails, the others go on.
            samples.append(None)
            unfinished.append(False)
            errors.append(f"split_{e}")
            continue
        samples.append((principle, rollout.question, rollout.response))
        unfinished.append(rollout.unfinished_think)
        errors.append("")
    return samples, unfinished, errors


def _judge_split(samples: Sequence[Optional[Tuple[str, str, str]]], normalize: str) -> _common.Judged:
    """``_common.judge_groups`` over the samples that were split; for the others nothing
    was judged (every field ``None``, name ``""``). A call of one rollout (OpenRLHF 0.11)
    joins its group through the shared coalescing point (``verl.judge_grouped``), where
    the concurrent calls of the other rollouts of its prompt meet it."""
    n = len(samples)
    if n == 1 and samples[0] is not None:
        result, index = judge_grouped(*samples[0])
        raw, reward, error = grouped_score(result, index, normalize)
        return _common.Judged([raw], [result], [reward], [error], [_common.response_name(index)])
    judged = [i for i, s in enumerate(samples) if s is not None]
    j = _common.judge_groups(get_client, [samples[i] for i in judged], normalize)
    raw: List[Optional[float]] = [None] * n
    results: List[Optional[Any]] = [None] * n
    rewards: List[Optional[float]] = [None] * n
    errors: List[Optional[str]] = [None] * n
    names: List[str] = [""] * n
    for k, i in enumerate(judged):
        raw[i], results[i], rewards[i], errors[i], names[i] = j.raw[k], j.results[k], j.rewards[k], j.errors[k], j.names[k]
    return _common.Judged(raw, results, rewards, errors, names)


def _error(split_error: str, j: _common.Judged, i: int) -> str:
    """A rollout's ``ra_error``: why its split failed, else why its group could not be
    normalized (``no_group``), else its judgment's error kind, else ``""``."""
    if split_error:
        return split_error
    if j.errors[i] is not None:
        return _common.NO_GROUP
    if j.raw[i] is not None:
        return ""
    result = j.results[i]
    return (result.error or {}).get("kind", "incomplete") if result is not None else "incomplete"


def reward_func(queries: Sequence[str], prompts: Sequence[str], labels: Optional[Sequence[Any]] = None, **kwargs: Any) -> Dict[str, Any]:
    """OpenRLHF's ``reward_func``: ``{"rewards": [...], "scores": [...], "extra_logs":
    {"ra_failed": [...], "ra_consistent": [...], "ra_unfinished_think": [...]},
    "ra_error": [...]}``, one entry per query. Queries that share a (principle, question)
    are judged together, listwise; a call of one query (OpenRLHF 0.11) meets the
    concurrent calls of its question in one group (``RA_GROUP_SIZE``, ``RA_COALESCE_MS``,
    ``RA_GROUP_BACKEND``). A query that cannot be split is not judged.

    ``RA_NORMALIZE=group`` normalizes over each group: a query without another scored
    one of its question in its group fails (``ra_failed`` 1, ``ra_error`` ``no_group``, the reason logged
    as a warning). Extra logs are numbers (OpenRLHF averages them), so the judge's
    reasoning goes to the ``rewardanything_rs.openrlhf`` logger at DEBUG level, each text
    starting with ``[shown as model-k]``."""
    env = _common.reward_env()
    normalize, failure = env.normalize, env.failure_reward
    samples, unfinished, split_errors = _samples(queries, prompts, labels)
    j = _judge_split(samples, normalize)
    for i in range(len(samples)):
        if j.errors[i] is not None:
            _log.warning("query %d: %s: %s", i, _common.NO_GROUP, j.errors[i])
        if _log.isEnabledFor(logging.DEBUG) and j.results[i] is not None:
            _log.debug("query %d: %s", i, j.reasoning(i))
    return {
        "rewards": [failure if r is None else r for r in j.rewards],
        "scores": [failure if s is None else s for s in j.raw],
        "extra_logs": {
            "ra_failed": [1.0 if j.failed(i) else 0.0 for i in range(len(samples))],
            "ra_consistent": [
                1.0 if not j.failed(i) and j.results[i] is not None and j.results[i].consistent else 0.0
                for i in range(len(samples))
            ],
            "ra_unfinished_think": [1.0 if u else 0.0 for u in unfinished],
        },
        "ra_error": [_error(e, j, i) for i, e in enumerate(split_errors)],
    }


__all__ = ["reward_func", "split_rollout", "RolloutSplitError", "cut_response", "user_question", "label_principle", "strip_end_of_turn"]
