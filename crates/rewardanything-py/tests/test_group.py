"""Group coalescing from Python: the Rust client library's Coalescer (the one behind
``ra gateway``'s ``/get_reward``) pinned by the shared arrivals table, which the
client's unit test and the gateway's test run too."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from rewardanything_rs import Client, Coalescer

TABLE = json.loads((Path(__file__).resolve().parents[3] / "tests" / "data" / "group_arrivals.json").read_text())


def text(i: int) -> str:
    return f"arrival {i} score={1 + i % 5}"


@pytest.mark.parametrize("case", TABLE["cases"], ids=[c["name"] for c in TABLE["cases"]])
def test_the_shared_arrivals_table_gives_its_groups(start_mock, case):
    mock = start_mock()
    s = case["settings"]
    coalescer = Coalescer(
        Client(mock.url),
        window=s["window_ms"] / 1000.0,
        max_group_size=s["max_group_size"],
        max_open_groups=s["max_open_groups"],
        expected_group_size=s["expected_group_size"],
    )
    arrivals = case["arrivals"]

    async def main():
        # Each call joins its group before the next one is made.
        return await asyncio.gather(*[coalescer.ajudge(p, q, text(i)) for i, (p, q) in enumerate(arrivals)])

    out = asyncio.run(main())
    expected = {}
    for group in case["groups"]:
        for k, i in enumerate(group):
            # Its position in the group and the scores of the whole group, in order.
            expected[i] = (k, [float(1 + j % 5) for j in group])
    for i, (result, index) in enumerate(out):
        assert result.ok, result.error
        scores = [result.scores[f"response-{k + 1}"] for k in range(len(result.scores))]
        assert (index, scores) == expected[i], f"arrival {i}"
        assert result.scores[f"response-{index + 1}"] == float(1 + i % 5)
    assert coalescer.open_groups == 0 and coalescer.waiting == 0
    assert mock.stop()["chat_requests"] == len(case["groups"]), "one upstream call per group"


def test_blocking_judge_from_threads_meets_in_one_group(start_mock):
    import threading

    mock = start_mock()
    coalescer = Coalescer(Client(mock.url), window=600.0, expected_group_size=4)
    out = [None] * 4

    def call(i):
        out[i] = coalescer.judge("p", "q", f"t{i} score={i + 1}")

    threads = [threading.Thread(target=call, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for i, (result, index) in enumerate(out):
        assert result.scores[f"response-{index + 1}"] == float(i + 1)
        assert len(result.scores) == 4
    assert mock.stop()["chat_requests"] == 1


def test_close_sends_open_groups_and_group_ids_split_a_key(start_mock):
    mock = start_mock()
    coalescer = Coalescer(Client(mock.url), window=600.0)

    async def main():
        # The native call joins the group at once (before anything is awaited).
        a = coalescer.ajudge("p", "q", "a score=1", group_id="u1")
        b = coalescer.ajudge("p", "q", "b score=2", group_id="u2")
        assert (coalescer.open_groups, coalescer.waiting) == (2, 2)
        coalescer.close()
        return await a, await b

    (ra, ia), (rb, ib) = asyncio.run(main())
    assert (ia, ib) == (0, 0) and len(ra.scores) == len(rb.scores) == 1
    assert ra.scores["response-1"] == 1.0 and rb.scores["response-1"] == 2.0
    assert mock.stop()["chat_requests"] == 2


@pytest.mark.parametrize(
    "kwargs, field",
    [
        ({"window": -1.0}, "window"),
        ({"window": float("nan")}, "window"),
        ({"max_group_size": 0}, "max_group_size"),
        ({"max_open_groups": -3}, "max_open_groups"),
        ({"expected_group_size": 0}, "expected_group_size"),
    ],
)
def test_bad_settings_name_the_field(kwargs, field):
    with pytest.raises(ValueError, match=field):
        Coalescer(Client("http://127.0.0.1:9/v1"), **kwargs)
