"""What the reward functions share: score normalization, grouping into listwise calls,
reading text out of chat messages, and the reasoning logged per completion.

Normalizations (the Rust client's ``Normalization``, the same names as ``ra gateway
--reward``): ``raw`` the 1-5 score, ``unit`` (s-1)/4, ``centered`` the fixed (s-3)/2,
``group`` (s-1)/4 minus the mean of its group (the completions of one prompt judged in
the same batch). ``group`` needs a group: a per-sample function refuses it
(``ValueError``), and in a batch a completion whose group has fewer than two scores
fails (``NO_GROUP``) rather than getting a constant 0.
"""

from __future__ import annotations

import warnings

from typing import Any, Callable, Dict, Hashable, Iterable, List, NamedTuple, Optional, Sequence, Tuple

from . import _native
from ._native import NORMALIZATIONS
from ._native import normalize as _normalize

#: Largest number of responses judged together in one listwise call.
MAX_GROUP_SIZE = 8

#: The error kind of a completion refused by ``group`` normalization for lack of a group.
NO_GROUP = "no_group"


def check_normalize(normalize: str, setting: str = "normalize") -> str:
    """``normalize`` if it is a known name, else ``ValueError`` naming ``setting``."""
    if normalize not in NORMALIZATIONS:
        raise ValueError(
            f"{setting} must be one of {NORMALIZATIONS} (centered is the fixed (s-3)/2, "
            f"group the unit score minus its group's mean), not {normalize!r}"
        )
    return normalize


def check_per_sample(normalize: str, setting: str, function: str) -> str:
    """Refuses ``group`` for a function that judges one completion per call."""
    check_normalize(normalize, setting)
    if normalize == "group":
        raise ValueError(
            f"{setting}=group cannot apply to {function}: it judges one completion per call, "
            "so there is no group to take the mean of and every reward would be 0. Use "
            "centered (the fixed (s-3)/2) or unit, or a function that judges groups"
        )
    return normalize


def lowest_reward(normalize: str) -> float:
    """The lowest reward ``normalize`` gives a judged response (the Rust client's
    ``Normalization::lowest_reward``)."""
    check_normalize(normalize)
    return _native.lowest_reward(normalize)


def default_failure_reward(normalize: str) -> float:
    """The reward of a failed judgment when none is set (the Rust client's rule, as in
    ``ra gateway``): never above the lowest reward of a judged response (0.0, or that
    lowest reward when it is below 0: -1.0 for ``centered`` and ``group``), so a policy
    never earns more by making its judgment fail than by its worst answer."""
    check_normalize(normalize)
    return _native.default_failure_reward(normalize)


def warn_if_failure_pays(failure: Optional[float], normalize: str, setting: str) -> None:
    """Warns (once per setting and value) when a failed judgment earns more than the worst
    judged response: then a policy can learn to fail its judgments."""
    if failure is None:
        return
    check_normalize(normalize)
    warning = _native.failure_pays(failure, normalize, setting)
    if warning is not None:
        warnings.warn(warning, RuntimeWarning, stacklevel=3)


class RewardEnv(NamedTuple):
    """The reward functions' settings, read from the environment by the Rust client's
    ``env`` module (the one owner of the names, parsing and defaults)."""

    #: ``RA_PRINCIPLE``: the principle when a sample gives none.
    principle: Optional[str]
    #: ``RA_MODEL``: the served model name.
    model: Optional[str]
    #: ``RA_NORMALIZE`` (default ``raw``).
    normalize: str
    #: ``RA_FAILURE_REWARD`` (default :func:`default_failure_reward`).
    failure_reward: float
    #: ``RA_COALESCE_MS``, in seconds (default 0.05).
    coalesce_window: float
    #: ``RA_MAX_GROUP_SIZE`` (default 8).
    max_group_size: int
    #: ``RA_GROUP_SIZE``: the size of a complete group (default ``None``; when set, the
    #: window defaults to 10 s: it only bounds the wait for stragglers).
    expected_group_size: Optional[int]


def reward_env(warn: bool = True) -> RewardEnv:
    """The reward functions' settings from the environment; warns (unless ``warn`` is
    false) when ``RA_FAILURE_REWARD`` pays more than the worst judged answer, and raises
    ``ValueError`` naming a variable that cannot be used."""
    env = _native.reward_env()
    if warn and env["failure_warning"] is not None:
        warnings.warn(env["failure_warning"], RuntimeWarning, stacklevel=3)
    return RewardEnv(
        env["principle"],
        env["model"],
        env["normalize"],
        env["failure_reward"],
        env["coalesce_window"],
        env["max_group_size"],
        env["expected_group_size"],
    )


def check_failure_reward(value: Optional[float], field: str = "failure_reward") -> Optional[float]:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{field} must be a float or None, not {type(value).__name__}")
    return float(value)


def normalize_scores(raw: Sequence[Optional[float]], normalize: str) -> Tuple[List[Optional[float]], Optional[str]]:
    """The rewards of one group's scores, by the Rust client's ``normalize``; ``None`` (a
    failed judgment) stays ``None``, and ``group`` takes the mean of the scored ones.
    Also the reason the group was refused (``group`` with fewer than two scores: then
    every reward is ``None``), else ``None``."""
    scored = [s for s in raw if s is not None]
    if not scored:
        return [None] * len(raw), None
    try:
        values = iter(_normalize(scored, normalize))
    except ValueError as e:
        return [None] * len(raw), str(e)
    return [None if s is None else next(values) for s in raw], None


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
) -> Tuple[List[Optional[float]], List[Optional[Any]], List[str]]:
    """Per sample: its raw score (``None`` when its call failed), its call's result and
    its response name in that call."""
    raw: List[Optional[float]] = [None] * n
    per_sample: List[Optional[Any]] = [None] * n
    names: List[str] = [""] * n
    for chunk, result in zip(chunks, results):
        scores = result.scores if result.ok else {}
        for k, i in enumerate(chunk):
            raw[i] = scores.get(response_name(k))
            per_sample[i] = result
            names[i] = response_name(k)
    return raw, per_sample, names


def normalize_groups(
    raw: Sequence[Optional[float]], keys: Sequence[Hashable], normalize: str
) -> Tuple[List[Optional[float]], List[Optional[str]]]:
    """Normalizes per group of samples sharing a key (a GRPO group). Per sample: its
    reward (``None`` when it has none) and why a scored sample got none (``group`` on a
    group with fewer than two scores), else ``None``."""
    out: List[Optional[float]] = [None] * len(raw)
    errors: List[Optional[str]] = [None] * len(raw)
    members: Dict[Hashable, List[int]] = {}
    for i, key in enumerate(keys):
        members.setdefault(key, []).append(i)
    for idx in members.values():
        values, error = normalize_scores([raw[i] for i in idx], normalize)
        for i, value in zip(idx, values):
            out[i] = value
            if error is not None and raw[i] is not None:
                errors[i] = error
    return out, errors


def logged_reasoning(result: Any, name: str, error: Optional[str] = None) -> str:
    """The text logged for one completion: a first line naming the masked name it was
    shown to the judge as (``[shown as model-3]``, from the masking of that very call),
    so the reasoning's ``model-k`` can be matched to it; then the error, if any, and the
    judge's reasoning."""
    if result is None:
        return ""
    lines = []
    shown = result.shown_as.get(name)
    if shown is not None:
        lines.append(f"[shown as {shown}]")
    if not result.ok:
        lines.append("error: " + error_text(result))
    elif error is not None:
        lines.append(f"error: {NO_GROUP}: {error}")
    if result.ok:
        lines.append(result.reasoning)
    return "\n".join(lines)


class Judged(NamedTuple):
    """What :func:`judge_groups` gives per sample."""

    #: The 1-5 score, ``None`` when its call failed.
    raw: List[Optional[float]]
    #: Its call's result (``None`` when nothing was judged).
    results: List[Optional[Any]]
    #: Its reward normalized over its group, ``None`` when it has none.
    rewards: List[Optional[float]]
    #: Why a scored sample has no reward (``group`` without a group), else ``None``.
    errors: List[Optional[str]]
    #: Its response name in its call (``response-k``).
    names: List[str]

    def failed(self, i: int) -> bool:
        return self.raw[i] is None or self.errors[i] is not None

    def reasoning(self, i: int) -> str:
        return logged_reasoning(self.results[i], self.names[i], self.errors[i])


def judge_groups(
    get_client: Callable[[], Any],
    samples: Sequence[Tuple[str, str, str]],
    normalize: str,
    max_group_size: int = MAX_GROUP_SIZE,
) -> Judged:
    """Judges ``(principle, prompt, response)`` samples, those sharing a (principle,
    prompt) together in listwise calls of at most ``max_group_size``, all in one
    ``judge_batch``. ``get_client`` is called only when there is something to judge."""
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
    raw, per_sample, names = spread(chunks, results, len(samples))
    rewards, errors = normalize_groups(raw, keys, normalize)
    return Judged(raw, per_sample, rewards, errors, names)
