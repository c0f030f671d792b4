"""RewardAnything on the Rust client: in-process, GIL-free judging for Python trainers.

>>> from rewardanything_rs import Client
>>> client = Client("http://127.0.0.1:8000/v1")            # doctest: +SKIP
>>> r = client.judge("Be concise.", "2+2?", {"a": "4", "b": "Four, because..."})  # doctest: +SKIP
>>> r.scores, r.ranking                                     # doctest: +SKIP

Reward functions in each framework's calling convention live in
:mod:`rewardanything_rs.trl`, :mod:`rewardanything_rs.verl` and
:mod:`rewardanything_rs.openrlhf`.
"""

from ._native import Client, RewardAnythingError, RewardResult, __version__

__all__ = ["Client", "RewardAnythingError", "RewardResult", "__version__"]
