"""veRL reward functions (``custom_reward_function.path`` pointing at a file that
imports these, or this module itself with ``custom_reward_function.name``).

Calling conventions followed (veRL 0.8-0.9):

* per-sample managers (naive, dapo, the reward loop)::

      compute_score(data_source=..., solution_str=..., ground_truth=..., extra_info=..., **kw)

  a coroutine function is awaited by the reward loop (``compute_score_async``);
* the batch manager::

      compute_score_batch(data_sources=..., solution_strs=..., ground_truths=...,
                          extra_infos=..., **kw) -> list

Which to use, by veRL version:

* veRL 0.9 (checked with 0.9.1): the reward loop awaits ``compute_score_async``, which
  coalesces concurrent calls of one prompt into one listwise call; ``compute_score``
  works with the per-sample managers. ``load_reward_manager`` no longer knows ``batch``
  (``ValueError: Unknown reward manager: batch``), so ``compute_score_batch`` cannot be
  used there.
* veRL 0.8 and earlier: ``compute_score_batch`` with the legacy ``BatchRewardManager``
  (``reward_model.reward_manager=batch``) judges each GRPO group together.

Each returns veRL's dict form ``{"score": s, "ra_consistent": bool, "ra_error": str,
"ra_reasoning": str}`` (``ra_error`` is ``""`` when the judgment succeeded, else its
kind, ``no_group`` for ``group`` normalization without a group; ``ra_reasoning`` starts
with ``[shown as model-k]``, the masked name the judge saw the sample under; veRL logs
the extras and skips string columns in its metrics).

veRL passes no prompt: it comes from ``extra_info["prompt"]`` (or ``"question"``), a str
or a list of chat messages; the principle from ``extra_info["principle"]``, else the
``RA_PRINCIPLE`` environment variable. The client is made once per process from
``RA_ENDPOINT``, ``RA_API_KEY`` (and ``RA_MODEL`` if set); when veRL deploys the reward
model itself it passes ``reward_router_address`` and the judge is
``http://{reward_router_address}/v1`` instead. ``RA_NORMALIZE`` (raw, unit,
centered = the fixed (s-3)/2, group = unit minus the group's mean; default raw),
``RA_FAILURE_REWARD`` (default 0.0, or -1.0 for centered and group: never above the
worst judged reward), ``RA_GROUP_SIZE`` (veRL's ``actor_rollout_ref.rollout.n``: a
group is judged as soon as it is complete; unset by default), ``RA_COALESCE_MS``
(how long a group waits after its first sample: default 50, or 10000 with
``RA_GROUP_SIZE``, when it only bounds the wait for stragglers) and
``RA_MAX_GROUP_SIZE`` (default 8) tune the rest. ``group`` is refused by
``compute_score`` (one sample per call: ``ValueError``); in the other two a sample whose
group has fewer than two scores fails (``ra_error: "no_group"``).
"""

from __future__ import annotations

import ipaddress
import os
import re
import threading
from collections import OrderedDict
from typing import Any, Dict, List, Optional, Sequence, Tuple

from . import _common
from . import Client
from . import _group_actor
from ._native import Coalescer

_lock = threading.Lock()
# (pid, {router address or None: client}), least recently used first. Bounded: a process
# that is handed many addresses (a restarted router) keeps only the last few clients; a
# dropped one finishes the calls that still hold it.
_clients: Optional[Tuple[int, "OrderedDict[Optional[str], Client]"]] = None

#: Clients kept per process, one per reward router address (plus the ``RA_ENDPOINT`` one).
MAX_CLIENTS = 8


def router_endpoint(address: str) -> str:
    """The endpoint of veRL's reward router at ``address`` (``host:port``, as veRL passes
    ``reward_router_address``): ``http://{address}/v1``. An IPv6 host must be bracketed
    (``[::1]:8000``, as veRL writes it); a bare one (``::1``, ``fe80::1:8000``) is refused,
    since its port could not be told from its last group."""
    if not isinstance(address, str):
        raise TypeError(f"reward_router_address must be a str (host:port), not {type(address).__name__}")
    if re.search(r"[/@?#%\s]", address):
        raise ValueError(f"reward_router_address must be host:port (no scheme, path or zone), not {address!r}")
    bracketed = re.fullmatch(r"\[([^\]]*)\](?::(\d{1,5}))?", address)
    if bracketed is not None:
        host, port = bracketed.group(1), bracketed.group(2)
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"reward_router_address {address!r}: {host!r} is not an IPv6 address") from None
    else:
        host, colon, port = address.partition(":")
        if ":" in port:
            raise ValueError(
                f"reward_router_address {address!r} looks like a bare IPv6 address: bracket it "
                "([addr]:port, as veRL does), else its port cannot be told from its last group"
            )
        if not re.fullmatch(r"[\w.-]+", host) or (colon and not port.isdigit()):
            raise ValueError(f"reward_router_address must be host:port (or [ipv6]:port), not {address!r}")
    if port and not 0 < int(port) < 65536:
        raise ValueError(f"reward_router_address {address!r}: port {port} is out of range")
    return f"http://{address}/v1"


def get_client(reward_router_address: Optional[str] = None) -> Client:
    """The process's client for veRL's reward router at ``reward_router_address``, or on
    ``RA_ENDPOINT`` when it is ``None`` (made on first use; a forked child makes its own)."""
    global _clients
    endpoint = None if reward_router_address is None else router_endpoint(reward_router_address)
    with _lock:
        if _clients is None or _clients[0] != os.getpid():
            _clients = (os.getpid(), OrderedDict())
        clients = _clients[1]
        client = clients.get(endpoint)
        if client is None:
            client = Client(endpoint, model=_common.reward_env(warn=False).model)
            clients[endpoint] = client
            while len(clients) > MAX_CLIENTS:
                clients.popitem(last=False)
        clients.move_to_end(endpoint)
        return client


def _settings() -> Tuple[str, float, float, int, Optional[int]]:
    """(normalize, failure reward, window in seconds, max group size, expected group
    size) from the environment (read by the Rust client's ``env`` module)."""
    env = _common.reward_env()
    return env.normalize, env.failure_reward, env.coalesce_window, env.max_group_size, env.expected_group_size


def _sample(solution_str: Any, extra_info: Any, field: str) -> Tuple[str, str, str]:
    """(principle, prompt, response) of one sample."""
    if not isinstance(solution_str, str):
        raise TypeError(f"{field}solution_str must be a str, not {type(solution_str).__name__}")
    info = extra_info if isinstance(extra_info, dict) else {}
    prompt = info.get("prompt", info.get("question"))
    if prompt is None:
        raise ValueError(f'{field}extra_info has no "prompt" (or "question"): the judge needs the prompt')
    principle = info.get("principle") or _common.reward_env(warn=False).principle
    if not principle:
        raise ValueError(f'{field}extra_info has no "principle" and RA_PRINCIPLE is not set')
    if not isinstance(principle, str):
        raise TypeError(f'{field}extra_info["principle"] must be a str, not {type(principle).__name__}')
    return principle, _common.prompt_text(prompt, f"{field}extra_info['prompt']"), solution_str


def _score_dict(
    raw: Optional[float], reward: Optional[float], result: Any, failure: float, name: str, error: Optional[str] = None
) -> Dict[str, Any]:
    """``error``: why a scored sample got no reward (``group`` without a group)."""
    ok = raw is not None and error is None
    if ok:
        kind = ""
    elif error is not None:
        kind = _common.NO_GROUP
    elif result is not None:
        kind = (result.error or {}).get("kind", "incomplete")
    else:
        kind = "cancelled"
    return {
        "score": reward if ok and reward is not None else failure,
        "ra_consistent": bool(ok and result.consistent),
        "ra_error": kind,
        "ra_reasoning": _common.logged_reasoning(result, name, error),
    }


def compute_score(
    data_source: Any,
    solution_str: str,
    ground_truth: Any,
    extra_info: Optional[dict] = None,
    reward_router_address: Optional[str] = None,
    reward_model_tokenizer: Any = None,
    **kwargs: Any,
) -> Dict[str, Any]:
    """One sample, judged alone (blocking; the GIL is released while waiting).
    ``RA_NORMALIZE=group`` is refused (``ValueError``): there is no group. With
    ``reward_router_address`` (veRL's own reward-model servers) the judge is
    ``http://{reward_router_address}/v1``; ``reward_model_tokenizer`` is not needed (the
    server applies the chat template)."""
    normalize, failure, _, _, _ = _settings()
    _common.check_per_sample(normalize, "RA_NORMALIZE", "verl.compute_score")
    principle, prompt, response = _sample(solution_str, extra_info, "")
    name = _common.response_name(0)
    result = get_client(reward_router_address).judge_batch([{"principle": principle, "prompt": prompt, "responses": {name: response}}])[0]
    raw = result.scores.get(name) if result.ok else None
    rewards, error = _common.normalize_scores([raw], normalize)
    return _score_dict(raw, rewards[0], result, failure, name, error)


def compute_score_batch(
    data_sources: Sequence[Any],
    solution_strs: Sequence[str],
    ground_truths: Sequence[Any],
    extra_infos: Sequence[Optional[dict]],
    **kwargs: Any,
) -> List[Dict[str, Any]]:
    """A batch: samples sharing a (principle, prompt) are judged together, listwise, in
    calls of at most ``RA_MAX_GROUP_SIZE``; all calls in flight at once."""
    normalize, failure, _, max_group, _ = _settings()
    n = len(solution_strs)
    if len(extra_infos) != n:
        raise ValueError(f"{len(extra_infos)} extra_infos for {n} solution_strs")
    samples = [_sample(s, e, f"sample {i}: ") for i, (s, e) in enumerate(zip(solution_strs, extra_infos))]
    j = _common.judge_groups(get_client, samples, normalize, max_group)
    return [_score_dict(j.raw[i], j.rewards[i], j.results[i], failure, j.names[i], j.errors[i]) for i in range(n)]


_coalescer: Optional[Tuple[Tuple[Any, ...], Coalescer]] = None


def get_coalescer(reward_router_address: Optional[str] = None) -> Coalescer:
    """The process's group coalescer (the Rust client library's, as behind ``ra
    gateway``'s ``/get_reward``), remade when its settings or the client change."""
    global _coalescer
    _, _, window, max_group, expected = _settings()
    client = get_client(reward_router_address)
    key = (os.getpid(), id(client), window, max_group, expected)
    with _lock:
        if _coalescer is None or _coalescer[0] != key:
            _coalescer = (key, Coalescer(client, window=window, max_group_size=max_group, expected_group_size=expected))
        return _coalescer[1]


async def ajudge_grouped(
    principle: str, prompt: str, response: str, reward_router_address: Optional[str] = None
) -> Tuple[Any, int]:
    """``(result, index)``: the judgment of ``response`` with the others of its group and
    its position there, through the shared Ray actor when running in Ray (see
    ``RA_GROUP_BACKEND``), else through this process's coalescer; on veRL's reward
    router at ``reward_router_address`` when given."""
    _, _, window, max_group, expected = _settings()
    if _group_actor.use_ray():
        endpoint = None if reward_router_address is None else router_endpoint(reward_router_address)
        s = _group_actor.settings(window, max_group, expected, endpoint)
        return await _group_actor.ajudge(s, principle, prompt, response)
    return await get_coalescer(reward_router_address).ajudge(principle, prompt, response)


def judge_grouped(principle: str, prompt: str, response: str) -> Tuple[Any, int]:
    """:func:`ajudge_grouped` for a caller that blocks per rollout (OpenRLHF): concurrent
    calls from other threads, processes or Ray workers meet in one group."""
    _, _, window, max_group, expected = _settings()
    if _group_actor.use_ray():
        return _group_actor.judge(_group_actor.settings(window, max_group, expected), principle, prompt, response)
    return get_coalescer().judge(principle, prompt, response)


def grouped_score(result: Any, index: int, normalize: str) -> Tuple[Optional[float], Optional[float], Optional[str]]:
    """(raw score, reward, why ``group`` refused it) of member ``index`` of a judged
    group; the scores are ``None`` when its judgment failed."""
    raw = result.scores.get(_common.response_name(index)) if result.ok else None
    if raw is None:
        return None, None, None
    group_raw = [result.scores.get(_common.response_name(k)) for k in range(len(result.scores))]
    rewards, error = _common.normalize_scores(group_raw, normalize)
    return raw, rewards[index], error


async def compute_score_async(
    data_source: Any,
    solution_str: str,
    ground_truth: Any,
    extra_info: Optional[dict] = None,
    reward_router_address: Optional[str] = None,
    reward_model_tokenizer: Any = None,
    **kwargs: Any,
) -> Dict[str, Any]:
    """``compute_score`` for veRL's reward loop (awaited; ``reward_router_address`` as
    there). Calls that share a prompt are judged together, listwise, by the Rust
    client's group coalescing, shared by every reward worker of a Ray job (one named
    actor, see ``RA_GROUP_BACKEND``): a group is sent when it holds ``RA_GROUP_SIZE``
    samples (veRL's ``actor_rollout_ref.rollout.n``), or ``RA_MAX_GROUP_SIZE``, or
    ``RA_COALESCE_MS`` after its first sample; ``group`` normalizes over that group, and
    a sample that was judged alone fails with ``ra_error: "no_group"``."""
    normalize, failure, _, _, _ = _settings()
    principle, prompt, response = _sample(solution_str, extra_info, "")
    result, index = await ajudge_grouped(principle, prompt, response, reward_router_address)
    raw, reward, error = grouped_score(result, index, normalize)
    return _score_dict(raw, reward, result, failure, _common.response_name(index), error)


__all__ = [
    "compute_score",
    "compute_score_async",
    "compute_score_batch",
    "get_client",
    "router_endpoint",
    "get_coalescer",
    "ajudge_grouped",
    "judge_grouped",
    "Coalescer",
]
