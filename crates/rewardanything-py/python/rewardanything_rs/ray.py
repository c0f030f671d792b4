"""Batch scoring on Ray Data: :class:`Judge`, a callable class for
``Dataset.map_batches`` (one :class:`~rewardanything_rs.Client` per actor, every row of a
batch in flight at once through the Rust client), and :func:`judge_dataset`.

>>> import ray.data
>>> from rewardanything_rs.ray import judge_dataset
>>> ds = ray.data.from_items([{"prompt": "2+2?", "responses": {"a": "4", "b": "5"}}])  # doctest: +SKIP
>>> judge_dataset(ds, "Prefer correct answers.", endpoints="http://10.0.0.5:8000/v1").take_all()  # doctest: +SKIP

Input columns: ``principle`` (or one fixed ``principle`` argument, never both),
``prompt`` (a str, or chat messages as the reward functions take them) and
``responses``, in any shape Arrow stores a set of named texts:

* a struct or a dict (``{"a": "...", "b": "..."}``): an Arrow struct has the keys of
  every row, so a null value is a response this row does not have and is skipped;
* a map (``pa.map_(pa.string(), pa.string())``) or a list of ``[name, text]`` pairs or
  of ``{"name": ..., "text": ...}`` structs: every entry is a response (a null text, or a
  name given twice, makes the row bad);
* a list of texts: named ``response-1``, ``response-2``, ... in order.

Output: every input column, then ``scores`` (map name -> 1-5 score), ``ranking`` (names,
best first), ``reasoning`` (the judge's think section), ``consistent`` (the ranking agrees
with the scores), ``error_kind`` and ``error`` (null when judged; the kinds of
``RewardAnythingError``, and ``bad_input`` for a row that could not be made into a
request), ``attempts`` and ``latency_ms``. A failed row has null ``scores``, ``ranking``
and ``reasoning`` and ``consistent`` false: a failed row is a row with an error, never a
failed job, and every input row comes out exactly once. An actor that dies mid-batch is
restarted by Ray Data and its batch judged again whole (its partial work is never
emitted).

Endpoints, read where each actor runs: the ``endpoints`` argument (a URL or a list),
else ``endpoints_file`` (``ra-serve``'s endpoints file, read by the Rust client, so it
must be on a path every node sees), else ``RA_ENDPOINT`` (read by the Rust client;
:func:`judge_dataset` carries the driver's value to the actors). The API key: ``api_key``,
else ``RA_API_KEY`` where the actor runs (it is not copied from the driver).
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional, Sequence, Tuple, Union

from . import _common, _native
from . import Client

if TYPE_CHECKING:  # ray[data] is needed only where this module is used
    import pyarrow
    from ray.data import Dataset

#: The columns :class:`Judge` adds, in order.
OUTPUT_COLUMNS = ("scores", "ranking", "reasoning", "consistent", "error_kind", "error", "attempts", "latency_ms")

#: ``error_kind`` of a row that could not be made into a request (as ``ra score`` names
#: an input line it cannot read).
BAD_INPUT = "bad_input"


class BadRow(ValueError):
    """Why one row cannot be judged (its ``error``)."""


def _pa():  # pyarrow comes with ray[data]; imported late so the module imports without it
    import pyarrow

    return pyarrow


def _text(value: Any, field: str) -> str:
    if not isinstance(value, str):
        kind = "null" if value is None else type(value).__name__
        raise BadRow(f"{field} must be a str, not {kind}")
    return value


def _as_list(value: Any) -> Optional[list]:
    """A list, tuple or numpy array as a list (numpy arrays come from list columns in
    the numpy and pandas batch formats), else ``None``."""
    if isinstance(value, (list, tuple)):
        return list(value)
    tolist = getattr(value, "tolist", None)
    if tolist is not None and getattr(value, "ndim", None) == 1:
        return list(tolist())
    return None


def responses_of(value: Any) -> Dict[str, str]:
    """The responses of one row (name -> text) from any shape Arrow stores them in (see
    the module's doc); :class:`BadRow` names what is wrong."""
    out: Dict[str, str] = {}
    if isinstance(value, Mapping):
        for name, text in value.items():
            if text is not None:  # a struct field this row does not have
                out[_text(name, "responses key")] = _text(text, f"responses[{name!r}]")
    else:
        items = _as_list(value)
        if items is None:
            kind = "null" if value is None else type(value).__name__
            raise BadRow(f"responses must be a map, a struct or a list of (name, text) pairs or of texts, not {kind}")
        for i, item in enumerate(items):
            if isinstance(item, str):
                name, text = _common.response_name(i), item
            elif isinstance(item, Mapping) and "name" in item and "text" in item:
                name, text = item["name"], item["text"]
            else:
                pair = _as_list(item)
                if pair is None or len(pair) != 2:
                    raise BadRow(f"responses[{i}] must be a (name, text) pair, a {{name, text}} struct or a text")
                name, text = pair
            name = _text(name, f"responses[{i}] name")
            if name in out:
                raise BadRow(f"responses names {name!r} twice: each response needs its own name")
            out[name] = _text(text, f"responses[{name!r}]")
    if not out:
        raise BadRow("responses is empty: give at least one response")
    return out


def _columns(batch: Any) -> "pyarrow.Table":
    """The batch as a pyarrow Table (the format :func:`judge_dataset` asks for; pandas
    and numpy batches are converted as Ray Data converts them)."""
    pa = _pa()
    if isinstance(batch, pa.Table):
        return batch
    from ray.data.block import BlockAccessor, BlockType

    table = BlockAccessor.batch_to_block(batch, block_type=BlockType.ARROW)
    if not isinstance(table, pa.Table):
        raise TypeError(f"a batch must be a pyarrow Table, a pandas DataFrame or a dict of arrays, not {type(batch).__name__}")
    return table


class Judge:
    """A callable class for ``Dataset.map_batches(Judge, fn_constructor_kwargs=...)``:
    each actor makes one client and judges every row of a batch in one ``judge_batch``
    (all in flight at once, up to ``concurrency``). Returns a pyarrow Table: the input
    columns, then :data:`OUTPUT_COLUMNS`.

    ``principle``: one principle for every row, else each row's ``principle`` column.
    ``endpoints`` / ``endpoints_file``: see the module's doc. ``client_options``: as for
    ``Client(...)`` (``api_key``, ``model``, ``concurrency``, ``timeout``, ``max_retries``,
    ``masking``, ``temperature``, ``max_tokens``).
    """

    def __init__(
        self,
        principle: Optional[str] = None,
        *,
        endpoints: Union[str, Sequence[str], None] = None,
        endpoints_file: Optional[str] = None,
        **client_options: Any,
    ):
        if principle is not None and (not isinstance(principle, str) or not principle.strip()):
            raise ValueError(f"principle must be a non-empty str or None (then the principle column), not {principle!r}")
        if endpoints is not None and endpoints_file is not None:
            raise ValueError("give endpoints or endpoints_file, not both")
        self.principle = principle
        if endpoints_file is not None:
            self.client = Client.from_endpoints_file(endpoints_file, **client_options)
        else:
            self.client = Client(endpoints, **client_options)

    def _requests(self, table: "pyarrow.Table") -> Tuple[List[Optional[dict]], List[Optional[str]]]:
        n = table.num_rows
        names = table.column_names
        for column in OUTPUT_COLUMNS:
            if column in names:
                raise ValueError(f"the input already has a {column!r} column: rename it, the judge writes its own")
        if self.principle is not None and "principle" in names:
            raise ValueError("a principle was given and the input has a principle column: use one or the other")
        if self.principle is None and "principle" not in names:
            raise ValueError("no principle: give one, or a principle column")
        for column in ("prompt", "responses"):
            if column not in names:
                raise ValueError(f"the input has no {column!r} column (it has {names})")
        principles = [self.principle] * n if self.principle is not None else table.column("principle").to_pylist()
        prompts = table.column("prompt").to_pylist()
        responses = table.column("responses").to_pylist()
        requests: List[Optional[dict]] = []
        errors: List[Optional[str]] = []
        for principle, prompt, resp in zip(principles, prompts, responses):
            try:
                principle = _text(principle, "principle")
                if not principle.strip():
                    raise BadRow("principle is blank")
                try:
                    prompt = _common.prompt_text(prompt, "prompt")
                except TypeError as e:
                    raise BadRow(str(e)) from None
                requests.append({"principle": principle, "prompt": prompt, "responses": responses_of(resp)})
                errors.append(None)
            except BadRow as e:
                requests.append(None)
                errors.append(str(e))
        return requests, errors

    def _judge(self, requests: List[dict]) -> List[Any]:
        try:
            return self.client.judge_batch(requests)
        except (TypeError, ValueError):
            # A request the Rust client refuses before sending anything (its own rules):
            # each is converted alone, so only that row fails, the rest are judged.
            return asyncio.run(self._judge_each(requests))

    async def _judge_each(self, requests: List[dict]) -> List[Any]:
        pending: List[Any] = []
        for r in requests:
            try:
                # The native method converts at once (the package's wrapper only when awaited).
                pending.append(_native.Client.ajudge_batch(self.client, [r]))
            except (TypeError, ValueError) as e:
                pending.append(BadRow(str(e)))
        out: List[Any] = []
        for p in pending:
            out.append(p if isinstance(p, BadRow) else (await p)[0])
        return out

    def __call__(self, batch: Any) -> "pyarrow.Table":
        pa = _pa()
        table = _columns(batch)
        requests, errors = self._requests(table)
        valid = [r for r in requests if r is not None]
        results = iter(self._judge(valid) if valid else [])
        cols: Dict[str, List[Any]] = {c: [] for c in OUTPUT_COLUMNS}
        for request, error in zip(requests, errors):
            result = next(results) if request is not None else BadRow(error)
            row: Tuple[Any, ...]
            if isinstance(result, BadRow):
                row = (None, None, None, False, BAD_INPUT, str(result), 0, 0)
            elif result.ok:
                row = (result.scores, result.ranking, result.reasoning, result.consistent, None, None, result.attempts, result.latency_ms)
            else:
                err = result.error or {}
                kind = err.get("kind", "incomplete")
                row = (None, None, None, False, kind, _common.error_text(result), result.attempts, result.latency_ms)
            for column, value in zip(OUTPUT_COLUMNS, row):
                cols[column].append(value)
        types = {
            "scores": pa.map_(pa.string(), pa.float64()),
            "ranking": pa.list_(pa.string()),
            "reasoning": pa.string(),
            "consistent": pa.bool_(),
            "error_kind": pa.string(),
            "error": pa.string(),
            "attempts": pa.int32(),
            "latency_ms": pa.int64(),
        }
        for column in OUTPUT_COLUMNS:
            table = table.append_column(column, pa.array(cols[column], type=types[column]))
        return table


def judge_dataset(
    ds: "Dataset",
    principle: Optional[str] = None,
    *,
    endpoints: Union[str, Sequence[str], None] = None,
    endpoints_file: Optional[str] = None,
    actors: int = 2,
    batch_size: int = 256,
    num_cpus: float = 0.5,
    max_concurrency: int = 4,
    **client_options: Any,
) -> "Dataset":
    """``ds`` with the judge's columns (see the module's doc): ``ds.map_batches(Judge,
    ...)`` on ``actors`` actors of ``num_cpus`` each, batches of ``batch_size`` rows,
    ``max_concurrency`` batches judged at once per actor (so one batch's slowest row does
    not idle the actor). Lazy, like every Dataset transform."""
    for name, value, low in (("actors", actors, 1), ("batch_size", batch_size, 1), ("max_concurrency", max_concurrency, 1)):
        if isinstance(value, bool) or not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, not {value!r}")
    from ray.data import ActorPoolStrategy

    env = {k: os.environ[k] for k in ("RA_ENDPOINT",) if endpoints is None and endpoints_file is None and os.environ.get(k)}
    return ds.map_batches(
        Judge,
        fn_constructor_args=(principle,),
        fn_constructor_kwargs={"endpoints": endpoints, "endpoints_file": endpoints_file, **client_options},
        batch_format="pyarrow",
        batch_size=batch_size,
        # The client is thread-safe: an actor's batches share its connections and limit.
        compute=ActorPoolStrategy(
            size=actors, max_concurrent_calls_per_actor=max_concurrency, enable_true_multi_threading=max_concurrency > 1
        ),
        num_cpus=num_cpus,
        runtime_env={"env_vars": env} if env else None,
    )


__all__ = ["Judge", "judge_dataset", "responses_of", "BadRow", "OUTPUT_COLUMNS", "BAD_INPUT"]
