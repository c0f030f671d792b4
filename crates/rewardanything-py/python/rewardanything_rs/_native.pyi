"""Type stubs of the native module (the Rust client)."""

from os import PathLike
from typing import Any, Awaitable, Dict, List, Mapping, Optional, Sequence, Tuple, Union, final

# Stubs are never run: type checkers ship typing_extensions.
from typing_extensions import TypedDict, Unpack, disjoint_base

__all__ = [
    "Client",
    "Coalescer",
    "RewardResult",
    "Rollout",
    "split_rollout",
    "user_question",
    "strip_end_of_turn",
    "label_principle",
    "RewardAnythingError",
    "RolloutSplitError",
    "normalize",
    "NORMALIZATIONS",
    "reward_env",
    "lowest_reward",
    "default_failure_reward",
    "failure_pays",
    "_shutdown",
    "__version__",
]

__version__: str

#: The reward normalizations, as the Rust client and ``ra gateway --reward`` name them:
#: ``raw`` (1-5), ``unit`` ((s-1)/4), ``centered`` (the fixed (s-3)/2), ``group``
#: ((s-1)/4 minus the group's mean; needs at least two scores).
NORMALIZATIONS: Tuple[str, ...]

_Responses = Union[Mapping[str, str], Sequence[str]]

class RewardAnythingError(Exception):
    """A judgment failed. ``kind`` as ``ra score`` writes it (``transport``,
    ``timeout``, ``deadline``, ``http_status``, ``context_length``, ``bad_response``,
    ``model_discovery``, ``cancelled``, ``no_json_object``, ``incomplete``, ...)."""

    kind: str
    message: str
    attempts: int

@final
class RewardResult:
    """One judgment (the reference client's attributes, plus what it took)."""

    @property
    def scores(self) -> Dict[str, float]: ...
    @property
    def ranking(self) -> List[str]: ...
    @property
    def shown_as(self) -> Dict[str, str]:
        """Response name -> the name the judge was shown it under (``model-3`` when
        masked, the name itself when not): what the reasoning's names refer to."""
    @property
    def reasoning(self) -> str: ...
    @property
    def raw_output(self) -> Optional[str]: ...
    @property
    def consistent(self) -> bool: ...
    @property
    def error(self) -> Optional[Dict[str, str]]: ...
    @property
    def ok(self) -> bool: ...
    @property
    def attempts(self) -> int: ...
    @property
    def latency_ms(self) -> int: ...
    def to_dict(self) -> Dict[str, Any]: ...

class _ClientOptions(TypedDict, total=False):
    """The keyword arguments of ``Client(...)`` and ``Client.from_endpoints_file(...)``;
    the defaults are in the comments."""

    api_key: Optional[str]  # None: $RA_API_KEY
    model: Optional[str]  # None: discovered (from_endpoints_file: the file's model)
    concurrency: int  # 256 judgments in flight
    timeout: float  # 600.0 seconds per attempt; 0.001 (a millisecond) to 604800 (a week)
    max_retries: int  # 3
    masking: str  # "reference", "seeded:<int>" or "none"
    temperature: float  # 0.0
    max_tokens: int  # 4096
    endpoints_dir: Union[str, "PathLike[str]", None]  # follow every endpoints file in it (one per node)
    endpoints_file: Union[str, "PathLike[str]", None]  # follow ra-serve's endpoints file

@disjoint_base
class Client:
    """A RewardAnything client on OpenAI-compatible endpoints (vLLM, llama.cpp).
    ``endpoints``: a URL, a list of URLs, or ``None``: ``$RA_ENDPOINT`` (comma-separated,
    as ``ra`` reads it), then ``http://127.0.0.1:8000/v1``."""

    def __new__(
        cls, endpoints: Union[str, Sequence[str], None] = None, **options: Unpack[_ClientOptions]
    ) -> "Client": ...
    @classmethod
    def from_endpoints_file(
        cls, path: Union[str, "PathLike[str]"], **options: Unpack[_ClientOptions]
    ) -> "Client": ...
    def judge(
        self, principle: str, prompt: str, responses: _Responses, mask_responses: Optional[bool] = None
    ) -> RewardResult: ...
    def judge_batch(self, requests: Sequence[Mapping[str, Any]]) -> List[RewardResult]: ...
    def ajudge(
        self, principle: str, prompt: str, responses: _Responses, mask_responses: Optional[bool] = None
    ) -> Awaitable[RewardResult]: ...
    def ajudge_batch(self, requests: Sequence[Mapping[str, Any]]) -> Awaitable[List[RewardResult]]: ...
    def connect(self) -> str: ...
    def close(self) -> None: ...
    @property
    def model(self) -> Optional[str]: ...
    @property
    def endpoints(self) -> List[str]: ...
    @property
    def concurrency(self) -> int: ...

@final
class Coalescer:
    """Group coalescing (the Rust client library's, as behind ``ra gateway``'s
    ``/get_reward``): responses sharing a (principle, prompt), or a ``group_id``, are
    judged together in one listwise call, sent when the group holds
    ``expected_group_size`` responses (complete), ``max_group_size`` (full), or
    ``window`` seconds after its first response. At most ``max_open_groups`` groups
    wait; beyond that a response is judged alone at once. A response joins its group
    when ``judge``/``ajudge`` is called, so call order is the order in the group."""

    def __new__(
        cls,
        client: Client,
        *,
        window: float = 0.05,
        max_group_size: int = 8,
        max_open_groups: int = 1024,
        expected_group_size: Optional[int] = None,
    ) -> "Coalescer": ...
    def judge(
        self, principle: str, prompt: str, response: str, group_id: Optional[str] = None
    ) -> Tuple[RewardResult, int]:
        """``(result, index)``: the group's result (``error`` set when it failed) and the
        response's position in it (its name is ``response-{index + 1}``). Blocks with
        the GIL released."""
    def ajudge(
        self, principle: str, prompt: str, response: str, group_id: Optional[str] = None
    ) -> Awaitable[Tuple[RewardResult, int]]: ...
    def close(self) -> None:
        """Sends every open group now; later responses are judged alone."""
    @property
    def open_groups(self) -> int: ...
    @property
    def waiting(self) -> int: ...
    @property
    def window(self) -> float: ...
    @property
    def max_group_size(self) -> int: ...
    @property
    def max_open_groups(self) -> int: ...
    @property
    def expected_group_size(self) -> Optional[int]: ...

@final
class Rollout:
    """An RL rollout split into the judge's question and the response."""

    @property
    def question(self) -> str: ...
    @property
    def response(self) -> str: ...
    @property
    def unfinished_think(self) -> bool: ...

class RolloutSplitError(ValueError):
    """A rollout has no boundary between prompt and response that the response could
    not have written, so it must not be judged."""

    kind: str  # prompt_not_found, no_template, no_assistant_header, not_single_turn

def split_rollout(query: str, prompt: Optional[str] = None) -> Rollout:
    """Splits ``query`` (prompt + response, special tokens kept) as the gateway's
    ``/get_reward`` does: the question is ``prompt``'s own last user turn and the
    response the query after the prompt (found even when a tokenizer round trip changed
    whitespace or begin-of-sequence tokens); with no prompt, the query must be a
    single-turn chat (its first assistant header ends the prompt). Then trailing
    end-of-turn tokens and a leading ``<think>...</think>`` block are cut; a think block
    that never closed leaves an empty response with ``unfinished_think`` set. Raises
    ``RolloutSplitError`` when no trusted boundary exists."""

def user_question(prompt: str) -> str:
    """The last user turn of a ChatML/Qwen, Llama 3, Gemma or DeepSeek prompt, else
    the prompt itself, trimmed."""

def strip_end_of_turn(text: str) -> str:
    """``text`` without its trailing end-of-turn tokens (repeated, with whitespace)."""

def normalize(scores: Sequence[float], normalization: str) -> List[float]:
    """One group's 1-5 scores as rewards (see ``NORMALIZATIONS``); ``ValueError`` for an
    unknown name, or for ``group`` on fewer than two scores (never a constant 0)."""

def reward_env() -> Dict[str, Any]:
    """The reward functions' settings from the environment, read by the Rust client's
    ``env`` module (defaults applied): ``principle`` (``RA_PRINCIPLE``), ``model``
    (``RA_MODEL``), ``normalize`` (``RA_NORMALIZE``, default ``raw``), ``failure_reward``
    (``RA_FAILURE_REWARD``, default :func:`default_failure_reward`), ``failure_warning``
    (the warning when that failure reward pays, else ``None``), ``coalesce_window``
    (``RA_COALESCE_MS`` in seconds, default 0.05) and ``max_group_size``
    (``RA_MAX_GROUP_SIZE``, default 8). ``ValueError`` names a variable that cannot be
    used."""

def lowest_reward(normalization: str) -> float:
    """The lowest reward of a judged response: the map of a score of 1; -1 for
    ``group`` (which its lowest tends to as the group grows)."""

def default_failure_reward(normalization: str) -> float:
    """The reward of a failed judgment when none is set: ``min(0, lowest_reward)``, so
    failing never pays more than the worst answer."""

def failure_pays(failure_reward: float, normalization: str, setting: str) -> Optional[str]:
    """The warning to give when ``failure_reward`` (set by ``setting``) is above the
    lowest reward of a judged response, else ``None``."""

def _shutdown() -> None:
    """Stops the tokio runtime (run by ``atexit``): later calls raise ``RuntimeError``."""

def label_principle(label: Any) -> Optional[str]:
    """The ``"principle"`` of a label that is a dict or the JSON text of one, else
    ``None``; ``ValueError`` when it is there but not a non-empty str."""
