"""What the reward functions share: score normalization, grouping into listwise calls,
and reading text out of chat messages."""

from __future__ import annotations

import math
from typing import Any, Callable, Dict, Hashable, Iterable, List, Optional, Sequence, Tuple

#: Accepted values of ``normalize``.
NORMALIZATIONS = ("raw", "unit", "centered")

#: Largest number of responses judged together in one listwise call.
MAX_GROUP_SIZE = 8


def check_normalize(normalize: str) -> str:
    if normalize not in NORMALIZATIONS:
        raise ValueError(f"normalize must be one of {NORMALIZATIONS}, not {normalize!r}")
    return normalize


def check_failure_reward(value: Optional[float], field: str = "failure_reward") -> Optional[float]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{field} must be a float or None, not {type(value).__name__}")
    return float(value)


def normalize_scores(raw: Sequence[Optional[float]], normalize: str) -> List[Optional[float]]:
    """``raw``: the 1-5 score; ``unit``: (s-1)/4; ``centered``: (s-1)/4 minus the mean of
    the group's successful scores. ``None`` (a failed judgment) stays ``None``."""
    if normalize == "raw":
        return list(raw)
    unit = [None if s is None else (s - 1.0) / 4.0 for s in raw]
    if normalize == "unit":
        return unit
    ok = [u for u in unit if u is not None]
    mean = math.fsum(ok) / len(ok) if ok else 0.0
    return [None if u is None else u - mean for u in unit]


def group_indices(keys: Sequence[Hashable], max_group_size: int = MAX_GROUP_SIZE) -> List[List[int]]:
    """Indices sharing a key, in first-seen order, cut into chunks of at most
    ``max_group_size`` (one listwise call each)."""
    groups: Dict[Hashable, List[int]] = {}
    for i, key in enumerate(keys):
        groups.setdefault(key, []).append(i)
    chunks: List[List[int]] = []
    for members in groups.values():
        for start in range(0, len(members), max_group_size):
            chunks.append(members[start : start + max_group_size])
    return chunks


def response_name(k: int) -> str:
    return f"response-{k + 1}"


def message_text(content: Any, field: str) -> str:
    """The text of a chat message's ``content``: a str, or a list of parts whose
    ``{"type": "text", "text": ...}`` entries are joined (images are skipped)."""
    if isinstance(content, str):
        return content
    if isinstance(content, (list, tuple)):
        texts = []
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                texts.append(part["text"])
        return "".join(texts)
    raise TypeError(f"{field} must be a str or a list of content parts, not {type(content).__name__}")


def _messages(value: Any, field: str) -> List[Tuple[str, str]]:
    out = []
    for j, m in enumerate(value):
        if not isinstance(m, dict) or "content" not in m:
            raise TypeError(f"{field}[{j}] must be a message dict with 'role' and 'content'")
        out.append((str(m.get("role", "")), message_text(m["content"], f"{field}[{j}].content")))
    return out


def prompt_text(value: Any, field: str) -> str:
    """A prompt as the judge's ``prompt``: a str as is; a conversation (list of
    ``{"role", "content"}``) with one user turn (and optional system turns) gives that
    turn's text, a longer conversation a ``role: text`` transcript."""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        messages = _messages(value, field)
        users = [text for role, text in messages if role == "user"]
        if len(users) == 1 and all(role in ("system", "developer", "user") for role, _ in messages):
            return users[0]
        return "\n\n".join(f"{role}: {text}" for role, text in messages)
    raise TypeError(f"{field} must be a str or a list of messages, not {type(value).__name__}")


def completion_text(value: Any, field: str) -> str:
    """A completion as the judged response: a str as is; conversational completions
    (a list of messages) give the text of their assistant turns."""
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)):
        messages = _messages(value, field)
        texts = [text for role, text in messages if role in ("assistant", "")]
        return "\n".join(texts if texts else [text for _, text in messages])
    raise TypeError(f"{field} must be a str or a list of messages, not {type(value).__name__}")


def error_text(result: Any) -> str:
    err = result.error
    return f"{err['kind']}: {err['message']}" if err else ""


def spread(
    chunks: Iterable[List[int]], results: Iterable[Any], n: int
) -> Tuple[List[Optional[float]], List[Optional[Any]]]:
    """Per sample: its raw score (``None`` when its call failed) and its call's result."""
    raw: List[Optional[float]] = [None] * n
    per_sample: List[Optional[Any]] = [None] * n
    for chunk, result in zip(chunks, results):
        scores = result.scores if result.ok else {}
        for k, i in enumerate(chunk):
            raw[i] = scores.get(response_name(k))
            per_sample[i] = result
    return raw, per_sample


def normalize_groups(
    raw: Sequence[Optional[float]], keys: Sequence[Hashable], normalize: str
) -> List[Optional[float]]:
    """Normalizes per group of samples sharing a key (a GRPO group)."""
    out: List[Optional[float]] = [None] * len(raw)
    members: Dict[Hashable, List[int]] = {}
    for i, key in enumerate(keys):
        members.setdefault(key, []).append(i)
    for idx in members.values():
        for i, value in zip(idx, normalize_scores([raw[i] for i in idx], normalize)):
            out[i] = value
    return out


def judge_groups(
    get_client: Callable[[], Any],
    samples: Sequence[Tuple[str, str, str]],
    normalize: str,
    max_group_size: int = MAX_GROUP_SIZE,
) -> Tuple[List[Optional[float]], List[Optional[Any]], List[Optional[float]]]:
    """Judges ``(principle, prompt, response)`` samples, those sharing a (principle,
    prompt) together in listwise calls of at most ``max_group_size``, all in one
    ``judge_batch``. Per sample: its raw score (``None`` when its call failed), its
    call's result, and its reward normalized over its group. ``get_client`` is called
    only when there is something to judge."""
    keys = [(p, q) for p, q, _ in samples]
    chunks = group_indices(keys, max_group_size)
    requests = [
        {
            "principle": keys[c[0]][0],
            "prompt": keys[c[0]][1],
            "responses": {response_name(k): samples[i][2] for k, i in enumerate(c)},
        }
        for c in chunks
    ]
    results = get_client().judge_batch(requests) if requests else []
    raw, per_sample = spread(chunks, results, len(samples))
    return raw, per_sample, normalize_groups(raw, keys, normalize)
