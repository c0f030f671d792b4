"""rewardanything_rs.ray on a local two-node Ray cluster (ray.cluster_utils.Cluster)
against ra-mock: every row judged right and kept with its input columns, each response
shape Arrow and the batch formats give, bad rows as rows with errors, and an actor killed
mid-batch (its batch judged again, every row out exactly once)."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

import pyarrow as pa  # comes with ray[data], which scripts/py-test.sh installs
import ray
import ray.data

from rewardanything_rs.ray import BAD_INPUT, OUTPUT_COLUMNS, Judge, judge_dataset, responses_of

PRINCIPLE = "Prefer correct answers."


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 2, "include_dashboard": False})
    c.add_node(num_cpus=2)
    try:
        ray.init(address=c.address, log_to_driver=False)
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False
        ctx.print_on_execution_start = False
        yield c
    finally:
        ray.shutdown()
        c.shutdown()


def wait_until(condition, timeout, what):
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.05)


def rows(n, prompt=lambda i: f"question {i}"):
    # Different keys per row: Arrow makes a struct of all of them, null where a row has none.
    out = []
    for i in range(n):
        responses = {"a": f"a{i} score={i % 5 + 1}", "b": f"b{i} score={(i // 5) % 5 + 1}"}
        if i % 3 == 0:
            responses["c"] = f"c{i} score=3"
        out.append({"id": i, "prompt": prompt(i), "responses": responses})
    return out


def expected_scores(i):
    scores = {"a": float(i % 5 + 1), "b": float((i // 5) % 5 + 1)}
    if i % 3 == 0:
        scores["c"] = 3.0
    return scores


def check_judged(out, n, skip=frozenset()):
    assert sorted(r["id"] for r in out) == [i for i in range(n) if i not in skip], "every row exactly once"
    for r in out:
        i = r["id"]
        assert r["error_kind"] is None and r["error"] is None, r
        assert dict(r["scores"]) == expected_scores(i), r
        assert sorted(r["ranking"]) == sorted(expected_scores(i)), r
        assert r["consistent"] is True and r["attempts"] == 1 and r["latency_ms"] >= 0
        assert r["reasoning"], r
        assert r["prompt"] == f"question {i}"  # input columns kept


def test_every_row_judged_on_two_nodes(cluster, start_mock):
    mock = start_mock("--latency-ms", "20")
    n = 600
    ds = ray.data.from_items(rows(n), override_num_blocks=6)
    out = judge_dataset(ds, PRINCIPLE, endpoints=mock.url, actors=2, batch_size=64).take_all()
    check_judged(out, n)
    assert list(out[0].keys()) == ["id", "prompt", "responses", *OUTPUT_COLUMNS]
    stats = mock.stop()
    assert stats["chat_requests"] == n
    # One judge_batch holds a batch's rows in flight together, not one after another.
    assert stats["max_in_flight"] >= 32, stats


def test_principle_column_env_endpoint_and_batch_formats(cluster, start_mock, monkeypatch):
    mock = start_mock()
    n = 40
    items = [dict(r, principle=f"principle {r['id']}") for r in rows(n)]
    # RA_ENDPOINT on the driver reaches the actors (judge_dataset carries it).
    monkeypatch.setenv("RA_ENDPOINT", mock.url)
    out = judge_dataset(ray.data.from_items(items), batch_size=16).take_all()
    check_judged(out, n)
    assert all(r["principle"] == f"principle {r['id']}" for r in out)
    # The callable class with the numpy and pandas batch formats too.
    for batch_format in ("numpy", "pandas"):
        out = (
            ray.data.from_items(rows(n))
            .map_batches(
                Judge,
                fn_constructor_args=(PRINCIPLE,),
                fn_constructor_kwargs={"endpoints": mock.url},
                batch_format=batch_format,
                batch_size=16,
                concurrency=1,
            )
            .take_all()
        )
        check_judged(out, n)
    assert mock.stop()["chat_requests"] == 3 * n


def test_response_shapes_as_arrow_stores_them(cluster, start_mock, tmp_path):
    mock = start_mock()
    texts = [("x", "score=2"), ("y", "score=5")]
    shapes = {
        "map": pa.array([texts], type=pa.map_(pa.string(), pa.string())),
        "pairs": pa.array([[list(t) for t in texts]], type=pa.list_(pa.list_(pa.string()))),
        "structs": pa.array([[{"name": a, "text": b} for a, b in texts]]),
        "struct": pa.array([dict(texts)]),
    }
    # The actor's call on the pyarrow batch Ray Data hands it (from_arrow keeps the types).
    judge = Judge(PRINCIPLE, endpoints=mock.url)
    for shape, column in shapes.items():
        table = pa.table({"id": [0], "prompt": ["q"], "responses": column})
        out = judge(table).to_pylist()
        assert [dict(r["scores"]) for r in out] == [{"x": 2.0, "y": 5.0}], (shape, out)
    table = pa.table({"prompt": ["q"], "responses": pa.array([["score=4", "score=1"]])})
    assert dict(judge(table).to_pylist()[0]["scores"]) == {"response-1": 4.0, "response-2": 1.0}
    # An endpoints file as ra-serve writes it.
    f = tmp_path / "endpoints.json"
    f.write_text('{"model": "RewardAnything-8B-v1", "endpoints": ["%s"]}' % mock.url)
    out = judge_dataset(ray.data.from_arrow(table), PRINCIPLE, endpoints_file=str(f), actors=1).take_all()
    assert out[0]["error"] is None and dict(out[0]["scores"]) == {"response-1": 4.0, "response-2": 1.0}, out


def test_bad_rows_are_rows_with_errors(cluster, start_mock):
    mock = start_mock()
    good = {"principle": "P", "prompt": "q", "responses": [["a", "score=4"]]}
    bad = {
        1: ({"prompt": None}, "prompt must be a str or a list of messages, not NoneType"),
        2: ({"responses": []}, "responses is empty"),
        3: ({"responses": None}, "responses must be a map"),
        4: ({"responses": [["a", "x"], ["a", "y"]]}, "names 'a' twice"),
        5: ({"principle": "  "}, "principle is blank"),
        6: ({"principle": None}, "principle must be a str, not null"),
        7: ({"responses": [["a", None]]}, "responses['a'] must be a str, not null"),
        8: ({"responses": [["a"]]}, "must be a (name, text) pair"),
    }
    items = []
    for i in range(12):
        row = dict(good, id=i)
        row.update(bad.get(i, ({}, ""))[0])
        if i == 9:
            row["prompt"] = "[[fault:400]]"  # a judgment that fails upstream
        items.append(row)
    out = sorted(judge_dataset(ray.data.from_items(items), batch_size=12, endpoints=mock.url).take_all(), key=lambda r: r["id"])
    assert [r["id"] for r in out] == list(range(12))
    for r in out:
        i = r["id"]
        if i in bad:
            assert r["error_kind"] == BAD_INPUT and bad[i][1] in r["error"], r
            assert r["scores"] is None and r["attempts"] == 0 and r["consistent"] is False
        elif i == 9:
            assert r["error_kind"] == "http_status" and r["error"].startswith("http_status: "), r
            assert r["scores"] is None and r["ranking"] is None
        else:
            assert r["error_kind"] is None and dict(r["scores"]) == {"a": 4.0}, r
    assert mock.stop()["chat_requests"] == 4  # the good rows and the 400; nothing for a bad row


def test_a_request_the_rust_client_refuses_fails_alone(start_mock):
    # What the Rust client's own rules refuse before sending (its conversion; with
    # JudgeRequest::validate also too many responses) fails that row alone. A lone
    # surrogate cannot come through Arrow; it is refused by the conversion today.
    from rewardanything_rs.ray import BadRow

    mock = start_mock()
    judge = Judge(PRINCIPLE, endpoints=mock.url)
    good = [{"principle": "P", "prompt": "q", "responses": {"a": f"score={k}"}} for k in (2, 5)]
    bad = {"principle": "P", "prompt": "bad \ud800", "responses": {"a": "score=3"}}
    out = judge._judge([good[0], bad, good[1]])
    assert isinstance(out[1], BadRow) and "prompt is not valid text" in str(out[1]), out
    assert [out[0].scores, out[2].scores] == [{"a": 2.0}, {"a": 5.0}]
    assert mock.stop()["chat_requests"] == 2


def test_configuration_errors_fail_at_once():
    with pytest.raises(ValueError, match="not both"):
        Judge(PRINCIPLE, endpoints="http://127.0.0.1:9/v1", endpoints_file="f")
    with pytest.raises(ValueError, match="principle"):
        Judge("  ", endpoints="http://127.0.0.1:9/v1")
    j = Judge(PRINCIPLE, endpoints="http://127.0.0.1:9/v1")
    for table, message in [
        (pa.table({"prompt": ["q"], "responses": [["x"]], "principle": ["p"]}), "one or the other"),
        (pa.table({"prompt": ["q"], "responses": [["x"]], "scores": [1]}), "already has a 'scores' column"),
        (pa.table({"prompt": ["q"]}), "no 'responses' column"),
    ]:
        with pytest.raises(ValueError, match=message):
            j(table)
    with pytest.raises(ValueError, match="no principle"):
        Judge(endpoints="http://127.0.0.1:9/v1")(pa.table({"prompt": ["q"], "responses": [["x"]]}))
    assert responses_of({"a": "1", "b": None}) == {"a": "1"}  # a struct's absent key


def test_an_actor_killed_mid_batch_is_retried_and_every_row_comes_out_once(cluster, start_mock, tmp_path):
    mock = start_mock("--latency-ms", "50")
    marks = tmp_path / "marks"
    marks.mkdir()

    # Defined here, so Ray ships the class by value (the test module is not importable
    # on the workers): it notes each batch it starts and ends under its process id.
    class MarkingJudge(Judge):
        def __call__(self, batch):
            name = f"{os.getpid()}-{'zero' if 0 in batch.column('id').to_pylist() else 'other'}-{time.monotonic_ns()}"
            (marks / name).write_text("")
            out = super().__call__(batch)
            (marks / (name + ".end")).write_text("")
            return out

    n = 400
    items = rows(n)
    # Row 0's first attempt hangs at the mock (a later one is answered), so the batch
    # holding it cannot end before its attempt times out (20 s): its actor is killed
    # mid-batch. Should the kill come before that request left, the retried batch's
    # attempt hangs instead and the client's own retry gets the answer.
    items[0] = {"id": 0, "prompt": "question 0 [[fail-first:1:hang]]", "responses": {"a": "a0 score=1"}}
    ds = ray.data.from_items(items, override_num_blocks=8).map_batches(
        MarkingJudge,
        fn_constructor_args=(PRINCIPLE,),
        fn_constructor_kwargs={"endpoints": mock.url, "timeout": 20.0, "max_retries": 1},
        batch_format="pyarrow",
        batch_size=50,
        concurrency=2,
    )
    result = {}

    def run():
        try:
            result["rows"] = ds.take_all()
        except BaseException as e:  # noqa: BLE001 - reported by the assertion below
            result["error"] = e

    runner = threading.Thread(target=run)
    runner.start()
    try:
        wait_until(lambda: any("-zero-" in p.name for p in marks.iterdir()), 120, "row 0's batch to start")
        started = next(p for p in marks.iterdir() if "-zero-" in p.name and not p.name.endswith(".end"))
        victim = int(started.name.split("-")[0])
        os.kill(victim, signal.SIGKILL)
    finally:
        runner.join(300)
    assert not runner.is_alive(), "the job did not finish"
    assert "error" not in result, result.get("error")
    # Killed mid-batch: that batch never ended there; it was judged again elsewhere.
    assert not (marks / (started.name + ".end")).exists()
    out = result["rows"]
    assert sorted(r["id"] for r in out) == list(range(n)), "every row exactly once"
    zero = next(r for r in out if r["id"] == 0)
    assert zero["error"] is None and dict(zero["scores"]) == {"a": 1.0}, zero
    check_judged([r for r in out if r["id"] != 0], n, skip={0})
    assert mock.stop()["chat_requests"] > n  # the killed batch was sent again
