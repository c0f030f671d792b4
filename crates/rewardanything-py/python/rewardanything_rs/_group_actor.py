"""One group coalescing point for every reward worker of a Ray job.

veRL's reward loop sends each finished rollout to a random reward worker (8 by default)
and OpenRLHF calls ``reward_func`` with one rollout at a time, so a coalescer inside each
process sees only part of a GRPO group. When the reward function runs inside Ray
(``ray.is_initialized()``, or ``RA_GROUP_BACKEND=ray``), every call goes instead to one
named actor per Ray namespace and configuration (get-or-create, no CPU reserved; it
belongs to the job, so it ends with it rather than outliving it on a long-lived
cluster), which holds the Rust client and its group
:class:`~rewardanything_rs.Coalescer`: rollouts of one group, from any worker on any
node, meet there and are judged in one listwise call.

* ``RA_GROUP_BACKEND``: ``auto`` (default: Ray when it is initialized in this process),
  ``ray`` or ``local`` (the process's own coalescer).
* Failure: a call that cannot reach the actor (it died, was killed, its node or the
  worker that made it went away)
  or waits longer than ``RA_GROUP_WAIT_S`` (default: the window plus 600 s, the bound
  veRL's reward loop puts on one score) gets a failed result (``ra_error``
  ``group_actor`` or ``group_timeout``), never an endless wait; the next call gets or
  creates the actor again.
* The actor is an async actor with ``max_concurrency`` :data:`MAX_CONCURRENCY`: every
  waiting rollout is one coroutine there.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import sys
import threading
from typing import Any, Dict, List, Optional, Tuple

#: Most calls the actor runs at once (each waiting rollout is one).
MAX_CONCURRENCY = 16384

#: The added bound on one call's wait beyond the group's window (veRL's reward loop
#: gives one score 600 s).
WAIT_BEYOND_WINDOW_S = 600.0

_NAME_PREFIX = "rewardanything_rs.group."

_lock = threading.Lock()
_handles: Dict[Tuple[str, str], Any] = {}


class GroupResult:
    """A judgment as it comes back from the actor: the attributes of
    :class:`~rewardanything_rs.RewardResult` the reward functions read."""

    __slots__ = ("scores", "ranking", "reasoning", "shown_as", "raw_output", "consistent", "error", "attempts", "latency_ms")

    def __init__(self, d: Dict[str, Any]):
        self.scores: Dict[str, float] = d.get("scores") or {}
        self.ranking: List[str] = d.get("ranking") or []
        self.reasoning: str = d.get("reasoning") or ""
        self.shown_as: Dict[str, str] = d.get("shown_as") or {}
        self.raw_output: Optional[str] = d.get("raw_output")
        self.consistent: bool = bool(d.get("consistent"))
        self.error: Optional[Dict[str, str]] = d.get("error")
        self.attempts: int = int(d.get("attempts") or 0)
        self.latency_ms: int = int(d.get("latency_ms") or 0)

    @property
    def ok(self) -> bool:
        return self.error is None

    @classmethod
    def failed(cls, kind: str, message: str) -> "GroupResult":
        return cls({"error": {"kind": kind, "message": message}})

    def __repr__(self) -> str:
        return f"GroupResult(scores={self.scores!r}, error={self.error!r})"


def use_ray() -> bool:
    """Whether calls go to the shared Ray actor (see ``RA_GROUP_BACKEND``)."""
    backend = (os.environ.get("RA_GROUP_BACKEND") or "auto").strip().lower()
    if backend not in ("auto", "ray", "local"):
        raise ValueError(f"RA_GROUP_BACKEND must be auto, ray or local, not {backend!r}")
    if backend == "local":
        return False
    if backend == "ray":
        return True
    # Never imported for this: a process that runs in Ray has imported it already.
    ray = sys.modules.get("ray")
    return ray is not None and bool(ray.is_initialized())


class _GroupActor:
    """The actor: one Rust client and one coalescer for every reward worker."""

    def __init__(self, settings: Dict[str, Any]):
        from . import Client
        from ._native import Coalescer

        client = Client(settings["endpoint"], api_key=settings["api_key"], model=settings["model"])
        self._coalescer = Coalescer(
            client,
            window=settings["window"],
            max_group_size=settings["max_group_size"],
            expected_group_size=settings["expected_group_size"],
        )

    async def judge(self, principle: str, prompt: str, response: str, group_id: Optional[str]) -> Tuple[Dict[str, Any], int]:
        result, index = await self._coalescer.ajudge(principle, prompt, response, group_id)
        return result.to_dict(), index

    def stats(self) -> Dict[str, int]:
        """The process id and what waits (tests, operators)."""
        return {"pid": os.getpid(), "open_groups": self._coalescer.open_groups, "waiting": self._coalescer.waiting}


def settings(
    window: float, max_group_size: int, expected_group_size: Optional[int], endpoint: Optional[str] = None
) -> Dict[str, Any]:
    """What makes the actor: the client's settings from the environment (as the
    process's own client reads them; ``RA_ENDPOINT`` may be a comma list, which
    ``Client`` accepts) or ``endpoint`` (veRL's reward router), and the grouping settings."""
    return {
        "endpoint": endpoint or os.environ.get("RA_ENDPOINT") or None,
        "api_key": os.environ.get("RA_API_KEY") or None,
        "model": os.environ.get("RA_MODEL") or None,
        "window": window,
        "max_group_size": max_group_size,
        "expected_group_size": expected_group_size,
    }


def actor_name(s: Dict[str, Any]) -> str:
    """One name per configuration (the key enters only through the hash)."""
    digest = hashlib.sha256(json.dumps(s, sort_keys=True).encode()).hexdigest()[:16]
    return _NAME_PREFIX + digest


def wait_bound(window: float) -> float:
    text = os.environ.get("RA_GROUP_WAIT_S")
    if text is None or not text.strip():
        return window + WAIT_BEYOND_WINDOW_S
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"RA_GROUP_WAIT_S must be a number of seconds, not {text!r}") from None
    if not value > 0 or value == float("inf"):
        raise ValueError(f"RA_GROUP_WAIT_S must be a positive number of seconds, not {text!r}")
    return value


def get_actor(s: Dict[str, Any]) -> Any:
    """The configuration's actor in this Ray namespace, made if there is none."""
    import ray

    namespace = ray.get_runtime_context().namespace
    name = actor_name(s)
    with _lock:
        handle = _handles.get((namespace, name))
        if handle is not None:
            return handle
        options = dict(
            name=name,
            namespace=namespace,
            get_if_exists=True,
            max_concurrency=MAX_CONCURRENCY,
            num_cpus=0,
            max_restarts=0,
        )
        try:
            handle = ray.remote(_GroupActor).options(**options).remote(s)
        except ValueError:
            # Another worker created it between the lookup and the creation.
            handle = ray.get_actor(name, namespace=namespace)
        _handles[(namespace, name)] = handle
        return handle


def forget(s: Dict[str, Any]) -> None:
    """Drops this process's handle: the next call gets or creates the actor again."""
    import ray

    key = (ray.get_runtime_context().namespace, actor_name(s))
    with _lock:
        _handles.pop(key, None)


def _failure(s: Dict[str, Any], e: BaseException, wait: float) -> Tuple[GroupResult, int]:
    forget(s)
    if isinstance(e, (asyncio.TimeoutError, TimeoutError)) or type(e).__name__ == "GetTimeoutError":
        return GroupResult.failed("group_timeout", f"no verdict from the group actor within {wait} s (RA_GROUP_WAIT_S)"), 0
    return GroupResult.failed("group_actor", f"the group actor failed: {type(e).__name__}: {e}"), 0


async def ajudge(
    s: Dict[str, Any], principle: str, prompt: str, response: str, group_id: Optional[str] = None
) -> Tuple[GroupResult, int]:
    """``(result, index)`` from the shared actor, awaited with a bound."""
    import ray

    wait = wait_bound(s["window"])
    try:
        ref = get_actor(s).judge.remote(principle, prompt, response, group_id)
        d, index = await asyncio.wait_for(ref, timeout=wait)
    except (ray.exceptions.RayError, asyncio.TimeoutError) as e:
        return _failure(s, e, wait)
    return GroupResult(d), index


def judge(
    s: Dict[str, Any], principle: str, prompt: str, response: str, group_id: Optional[str] = None
) -> Tuple[GroupResult, int]:
    """``(result, index)`` from the shared actor, blocking with a bound."""
    import ray

    wait = wait_bound(s["window"])
    try:
        ref = get_actor(s).judge.remote(principle, prompt, response, group_id)
        d, index = ray.get(ref, timeout=wait)
    except ray.exceptions.RayError as e:
        return _failure(s, e, wait)
    return GroupResult(d), index
