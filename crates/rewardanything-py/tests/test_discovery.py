"""Endpoint discovery from Python: a directory of endpoints files (one per node) whose
files come and go while the client runs, and a `dns+` name through the system resolver."""

from __future__ import annotations

import json
import time

from rewardanything_rs import Client


def write_node(path, mock) -> None:
    tmp = path.with_name("." + path.name + ".tmp")
    tmp.write_text(json.dumps({"endpoints": [mock.url], "model": "RewardAnything-8B-v1", "pid": 1}))
    tmp.rename(path)  # atomically, as ra-serve does


def judge_until(client: Client, cond, limit: float = 20.0) -> int:
    """Judges one request at a time until `cond()` holds; returns how many it judged."""
    deadline = time.monotonic() + limit
    n = 0
    while not cond():
        assert time.monotonic() < deadline, f"not within {limit} s: {client.endpoints}"
        r = client.judge("p", f"q{n}", {"a": "x score=3", "b": "y score=1"})
        assert r.scores == {"a": 3.0, "b": 1.0}
        n += 1
    return n


def test_endpoints_dir_follows_nodes_coming_and_going(start_mock, tmp_path):
    a, b = start_mock(), start_mock()
    write_node(tmp_path / "node-a.json", a)
    (tmp_path / "garbage.json").write_text("{not json")
    client = Client(endpoints_dir=tmp_path)
    assert client.endpoints == [a.url], "only the valid file"
    judged = 0
    for i in range(5):
        client.judge("p", f"first {i}", {"a": "x score=3", "b": "y score=1"})
    judged += 5
    write_node(tmp_path / "node-b.json", b)
    judged += judge_until(client, lambda: sorted(client.endpoints) == sorted([a.url, b.url]))
    results = client.judge_batch(
        [{"principle": "p", "prompt": f"batch {i}", "responses": {"a": "score=2", "b": "score=4"}} for i in range(40)]
    )
    assert all(r.error is None for r in results)
    judged += 40
    (tmp_path / "node-a.json").unlink()
    judged += judge_until(client, lambda: client.endpoints == [b.url])
    for i in range(10):
        client.judge("p", f"last {i}", {"a": "x score=3", "b": "y score=1"})
    judged += 10
    sa, sb = a.stop()["chat_requests"], b.stop()["chat_requests"]
    assert sa + sb == judged, "every judgment sent exactly once"
    assert sb >= 10 and sa >= 5


def test_a_dns_entry_through_the_system_resolver(mock):
    assert mock.url.startswith("http://127.0.0.1:")
    client = Client(mock.url.replace("http://127.0.0.1", "dns+http://localhost"))
    for i in range(5):
        r = client.judge("p", f"q{i}", {"a": "x score=3", "b": "y score=1"})
        assert r.scores == {"a": 3.0, "b": 1.0}
    assert any("[127.0.0.1]" in e for e in client.endpoints), client.endpoints
    assert mock.stop()["chat_requests"] == 5
