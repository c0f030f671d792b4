"""OpenRLHF reward function for ``--remote_rm_url path/to/file.py``.

OpenRLHF (0.11) loads ``reward_func`` from that file and calls it in a worker thread as
``reward_func(queries, prompts, labels)`` with one rollout per call, where a query is the
decoded prompt + response with special tokens kept. It reads ``rewards``, ``scores``
and ``extra_logs`` (lists, one entry per query) from the returned dict. A file such as::

    from rewardanything_rs.openrlhf import reward_func  # noqa: F401

is all that is needed. The client comes from ``RA_ENDPOINT``/``RA_API_KEY`` (made once
per process); the principle from a label that is a dict (or JSON text of one) with a
``"principle"`` key, else ``RA_PRINCIPLE``. ``RA_NORMALIZE`` (raw, unit, centered; default
raw) maps the 1-5 score to the reward and ``RA_FAILURE_REWARD`` (default 0.0) is given
for a failed judgment, flagged in ``extra_logs["ra_failed"]``.

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

import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

from . import _common
from ._native import RolloutSplitError, label_principle, split_rollout, strip_end_of_turn, user_question
from .verl import get_client


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
    default = os.environ.get("RA_PRINCIPLE")
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


def _judge_split(samples: Sequence[Optional[Tuple[str, str, str]]], normalize: str) -> Tuple[List[Optional[float]], List[Optional[Any]], List[Optional[float]]]:
    """``_common.judge_groups`` over the samples that were split; ``None`` for the others."""
    n = len(samples)
    judged = [i for i, s in enumerate(samples) if s is not None]
    raw_j, per_j, rewards_j = _common.judge_groups(get_client, [samples[i] for i in judged], normalize)
    raw: List[Optional[float]] = [None] * n
    per_sample: List[Optional[Any]] = [None] * n
    rewards: List[Optional[float]] = [None] * n
    for k, i in enumerate(judged):
        raw[i], per_sample[i], rewards[i] = raw_j[k], per_j[k], rewards_j[k]
    return raw, per_sample, rewards


def _error(split_error: str, score: Optional[float], result: Any) -> str:
    """A rollout's ``ra_error``: why its split failed, else its judgment's error kind, else ``""``."""
    if split_error or score is not None:
        return split_error
    return (result.error or {}).get("kind", "incomplete") if result is not None else "incomplete"


def reward_func(queries: Sequence[str], prompts: Sequence[str], labels: Optional[Sequence[Any]] = None, **kwargs: Any) -> Dict[str, Any]:
    """OpenRLHF's ``reward_func``: ``{"rewards": [...], "scores": [...], "extra_logs":
    {"ra_failed": [...], "ra_consistent": [...], "ra_unfinished_think": [...]},
    "ra_error": [...]}``, one entry per query. Queries that share a (principle, question)
    are judged together, listwise; a query that cannot be split is not judged."""
    normalize = _common.check_normalize(os.environ.get("RA_NORMALIZE", "raw"))
    failure = float(os.environ.get("RA_FAILURE_REWARD", "0.0"))
    samples, unfinished, errors = _samples(queries, prompts, labels)
    raw, per_sample, rewards = _judge_split(samples, normalize)
    return {
        "rewards": [failure if r is None else r for r in rewards],
        "scores": [failure if s is None else s for s in raw],
        "extra_logs": {
            "ra_failed": [0.0 if s is not None else 1.0 for s in raw],
            "ra_consistent": [1.0 if s is not None and r is not None and r.consistent else 0.0 for s, r in zip(raw, per_sample)],
            "ra_unfinished_think": [1.0 if u else 0.0 for u in unfinished],
        },
        "ra_error": [_error(e, s, r) for e, s, r in zip(errors, raw, per_sample)],
    }


__all__ = ["reward_func", "split_rollout", "RolloutSplitError", "cut_response", "user_question", "label_principle", "strip_end_of_turn"]
