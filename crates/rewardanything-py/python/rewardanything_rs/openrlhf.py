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

The response is cut as the gateway's ``/get_reward`` does: the prompt prefix is removed
(or, when the query does not start with it, the text after the last assistant header of
a ChatML or Llama 3 template is taken), then trailing end-of-turn tokens
(``<|im_end|>``, ``<|endoftext|>``, ``<|eot_id|>``, ``</s>``) and whitespace. The judge's
prompt is the last user turn of a ChatML/Qwen or Llama 3 prompt, else the prompt as is.
"""

from __future__ import annotations

import json
import os
import re
from typing import Any, Dict, List, Optional, Sequence, Tuple

from . import _common
from .verl import get_client

END_OF_TURN = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>", "</s>")

_CHATML_USER = re.compile(r"<\|im_start\|>user\s*\n(.*?)(?:<\|im_end\|>|$)", re.S)
_LLAMA3_USER = re.compile(
    r"<\|start_header_id\|>user<\|end_header_id\|>\s*(.*?)(?:<\|eot_id\|>|$)", re.S
)
_ASSISTANT_HEADERS = ("<|im_start|>assistant\n", "<|start_header_id|>assistant<|end_header_id|>\n\n")


def strip_end_of_turn(text: str) -> str:
    """Removes trailing end-of-turn tokens (repeated, with whitespace between)."""
    text = text.rstrip()
    changed = True
    while changed:
        changed = False
        for token in END_OF_TURN:
            if text.endswith(token):
                text = text[: -len(token)].rstrip()
                changed = True
    return text


def cut_response(query: str, prompt: str) -> str:
    """The policy's response inside an OpenRLHF query (prompt + response)."""
    if prompt and query.startswith(prompt):
        body = query[len(prompt) :]
    else:
        ends = [query.rfind(h) + len(h) for h in _ASSISTANT_HEADERS if h in query]
        body = query[max(ends) :] if ends else query
    return strip_end_of_turn(body).strip()


def user_question(prompt: str) -> str:
    """The user's question inside a templated prompt (the last user turn)."""
    for pattern in (_CHATML_USER, _LLAMA3_USER):
        turns = pattern.findall(prompt)
        if turns:
            return turns[-1].strip()
    return prompt.strip()


def label_principle(label: Any) -> Optional[str]:
    """The ``"principle"`` of a label that is a dict or the JSON text of one."""
    if isinstance(label, str) and label.lstrip().startswith("{"):
        try:
            label = json.loads(label)
        except ValueError:
            return None
    if isinstance(label, dict) and isinstance(label.get("principle"), str):
        return label["principle"]
    return None


def _samples(queries: Sequence[str], prompts: Sequence[str], labels: Optional[Sequence[Any]]) -> List[Tuple[str, str, str]]:
    if len(prompts) != len(queries) or (labels is not None and len(labels) != len(queries)):
        raise ValueError("queries, prompts and labels must have the same length")
    default = os.environ.get("RA_PRINCIPLE")
    out = []
    for i, (q, p) in enumerate(zip(queries, prompts)):
        if not isinstance(q, str) or not isinstance(p, str):
            raise TypeError(f"queries[{i}] and prompts[{i}] must be str")
        principle = label_principle(labels[i] if labels is not None else None) or default
        if not principle:
            raise ValueError(f'no principle for query {i}: set RA_PRINCIPLE or a label {{"principle": ...}}')
        out.append((principle, user_question(p), cut_response(q, p)))
    return out


def reward_func(queries: Sequence[str], prompts: Sequence[str], labels: Optional[Sequence[Any]] = None, **kwargs: Any) -> Dict[str, Any]:
    """OpenRLHF's ``reward_func``: ``{"rewards": [...], "scores": [...], "extra_logs":
    {"ra_failed": [...], "ra_consistent": [...]}}``, one entry per query. Queries that
    share a (principle, question) are judged together, listwise."""
    normalize = _common.check_normalize(os.environ.get("RA_NORMALIZE", "raw"))
    failure = float(os.environ.get("RA_FAILURE_REWARD", "0.0"))
    samples = _samples(queries, prompts, labels)
    n = len(samples)
    keys = [(p, q) for p, q, _ in samples]
    chunks = _common.group_indices(keys)
    requests = [
        {
            "principle": keys[c[0]][0],
            "prompt": keys[c[0]][1],
            "responses": {_common.response_name(k): samples[i][2] for k, i in enumerate(c)},
        }
        for c in chunks
    ]
    results = get_client().judge_batch(requests) if requests else []
    raw, per_sample = _common.spread(chunks, results, n)
    rewards = _common.normalize_groups(raw, keys, normalize)
    return {
        "rewards": [failure if r is None else r for r in rewards],
        "scores": [failure if s is None else s for s in raw],
        "extra_logs": {
            "ra_failed": [0.0 if s is not None else 1.0 for s in raw],
            "ra_consistent": [1.0 if s is not None and r is not None and r.consistent else 0.0 for s, r in zip(raw, per_sample)],
        },
    }


__all__ = ["reward_func", "cut_response", "user_question", "label_principle", "strip_end_of_turn"]
