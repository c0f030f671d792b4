"""RewardAnything on the Rust client: in-process, GIL-free judging for Python trainers.

>>> from rewardanything_rs import Client
>>> client = Client("http://127.0.0.1:8000/v1")            # doctest: +SKIP
>>> r = client.judge("Be concise.", "2+2?", {"a": "4", "b": "Four, because..."})  # doctest: +SKIP
>>> r.scores, r.ranking                                     # doctest: +SKIP

Reward functions in each framework's calling convention live in
:mod:`rewardanything_rs.trl`, :mod:`rewardanything_rs.verl` and
:mod:`rewardanything_rs.openrlhf`; :func:`split_rollout` splits an RL rollout's text into
the judge's question and response exactly as the ``ra gateway``'s ``/get_reward`` does.
"""

from __future__ import annotations

import atexit
from typing import Any, List, Mapping, Sequence, Union

from . import _native
from ._native import Coalescer, RewardAnythingError, RewardResult, Rollout, __version__, split_rollout

# The tokio runtime is stopped while Python is still whole: its tasks must never touch
# the interpreter once it finalizes (that aborted or panicked at exit).
atexit.register(_native._shutdown)

#: ``responses``: name -> text, or a list of texts (named response-1, response-2, ...).
Responses = Union[Mapping[str, str], Sequence[str]]


class Client(_native.Client):
    __doc__ = _native.Client.__doc__

    async def ajudge(
        self, principle: str, prompt: str, responses: Responses, mask_responses: bool = True
    ) -> RewardResult:
        """``judge`` for asyncio: ``await client.ajudge(...)``. Raises
        ``RewardAnythingError`` on failure; calls share the client's concurrency limit.
        Cancelling it (``asyncio.wait_for``, ``task.cancel()``) or closing its event loop
        cancels the judgment."""
        return await super().ajudge(principle, prompt, responses, mask_responses)

    async def ajudge_batch(self, requests: Sequence[Mapping[str, Any]]) -> List[RewardResult]:
        """``judge_batch`` for asyncio: results in input order, failed items in place."""
        return await super().ajudge_batch(requests)


Client.__module__ = __name__

__all__ = ["Client", "Coalescer", "RewardAnythingError", "RewardResult", "Rollout", "split_rollout", "__version__"]
