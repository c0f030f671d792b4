"""Type stubs of the native module (the Rust client)."""

from os import PathLike
from typing import Any, Awaitable, Dict, List, Mapping, Optional, Sequence, Union

__version__: str

Responses = Union[Mapping[str, str], Sequence[str]]

class RewardAnythingError(Exception):
    """A judgment failed. ``kind`` as ``ra score`` writes it (``transport``,
    ``timeout``, ``deadline``, ``http_status``, ``context_length``, ``bad_response``,
    ``model_discovery``, ``cancelled``, ``no_json_object``, ``incomplete``, ...)."""

    kind: str
    message: str
    attempts: int

class RewardResult:
    """One judgment (the reference client's attributes, plus what it took)."""

    @property
    def scores(self) -> Dict[str, float]: ...
    @property
    def ranking(self) -> List[str]: ...
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

class Client:
    """A RewardAnything client on OpenAI-compatible endpoints (vLLM, llama.cpp)."""

    def __init__(
        self,
        endpoints: Union[str, Sequence[str], None] = None,
        *,
        api_key: Optional[str] = None,
        model: Optional[str] = None,
        concurrency: int = 256,
        timeout: float = 600.0,
        max_retries: int = 3,
        masking: str = "reference",
        temperature: float = 0.0,
        max_tokens: int = 4096,
    ) -> None: ...
    @classmethod
    def from_endpoints_file(
        cls,
        path: Union[str, "PathLike[str]"],
        *,
        api_key: Optional[str] = None,
        model: Optional[str] = None,
        concurrency: int = 256,
        timeout: float = 600.0,
        max_retries: int = 3,
        masking: str = "reference",
        temperature: float = 0.0,
        max_tokens: int = 4096,
    ) -> "Client": ...
    def judge(
        self, principle: str, prompt: str, responses: Responses, mask_responses: bool = True
    ) -> RewardResult: ...
    def judge_batch(self, requests: Sequence[Mapping[str, Any]]) -> List[RewardResult]: ...
    def ajudge(
        self, principle: str, prompt: str, responses: Responses, mask_responses: bool = True
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
