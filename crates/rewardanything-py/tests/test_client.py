"""The Client against ra-mock: results, order, errors, bad input, asyncio, Ctrl-C."""

from __future__ import annotations

import asyncio
import http.server
import importlib.metadata
import json
import random
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest

import rewardanything_rs
from rewardanything_rs import Client, RewardAnythingError, RewardResult

NAMES = ["a", "b", "c", "d", "e"]


def digits(i: int):
    """Five base-5 digits of i (i < 3125) as scores 1..5: a unique score pattern."""
    return [(i // 5**k) % 5 + 1 for k in range(5)]


def test_judge_returns_the_reference_attributes(mock):
    client = Client(mock.url)
    r = client.judge("Be concise.", "2+2?", {"x": "4 score=5", "y": "long score=2"})
    assert isinstance(r, RewardResult)
    assert r.scores == {"x": 5.0, "y": 2.0}
    assert r.ranking == ["x", "y"]
    assert "deserves" in r.reasoning
    assert isinstance(r.raw_output, str) and '"scores"' in r.raw_output
    assert r.consistent is True and r.error is None and r.ok is True
    assert r.attempts == 1 and isinstance(r.latency_ms, int)
    assert r.to_dict()["scores"] == {"x": 5.0, "y": 2.0}
    # A list of responses is named response-1, response-2, ...
    r = client.judge("p", "q", ["score=1", "score=3"], mask_responses=False)
    assert r.scores == {"response-1": 1.0, "response-2": 3.0}
    assert client.model is not None


def test_batch_of_2000_under_random_latency_is_in_order_and_attributed(start_mock):
    mock = start_mock("--latency-ms", "15", "--latency-jitter-ms", "15", "--seed", "7")
    rng = random.Random(1)
    order = list(range(2000))
    rng.shuffle(order)  # the score patterns are not in input order either
    requests = []
    for i in order:
        extra = f" [[latency-ms:{rng.randrange(0, 40)}]]" if i % 3 == 0 else ""
        requests.append(
            {
                "id": i,
                "principle": "p",
                "prompt": f"item {i}{extra}",
                "responses": {n: f"{n}{i} score={d}" for n, d in zip(NAMES, digits(i))},
            }
        )
    results = Client(mock.url, concurrency=256).judge_batch(requests)
    assert len(results) == 2000
    for req, r in zip(requests, results):
        assert r.error is None, r.error
        assert list(r.scores) == NAMES
        assert [int(r.scores[n]) for n in NAMES] == digits(req["id"])
    stats = mock.stop()
    assert stats["chat_requests"] == 2000
    assert stats["max_in_flight"] > 1  # really concurrent


def test_failed_items_stay_in_place_with_their_kind(mock):
    client = Client(mock.url, max_retries=0)
    requests = [
        {"principle": "p", "prompt": "ok", "responses": {"a": "score=4"}},
        {"principle": "p", "prompt": "[[fault:malformed]]", "responses": {"a": "x"}},
        {"principle": "p", "prompt": "[[fault:400]]", "responses": {"a": "x"}},
        {"principle": "p", "prompt": "[[fault:503]]", "responses": {"a": "x"}},
        {"principle": "p", "prompt": "fine", "responses": {"a": "score=2"}, "mask_responses": False},
    ]
    results = client.judge_batch(requests)
    assert [r.error["kind"] if r.error else None for r in results] == [
        None,
        "no_json_object",
        "http_status",
        "http_status",
        None,
    ]
    assert results[0].scores == {"a": 4.0} and results[4].scores == {"a": 2.0}
    for r in results[1:4]:
        assert r.scores == {} and r.ranking == [] and r.raw_output is None and not r.ok
        assert r.error["message"]
    assert "503" in results[3].error["message"]


def test_judge_raises_with_kind(mock):
    client = Client(mock.url, max_retries=0)
    with pytest.raises(RewardAnythingError) as e:
        client.judge("p", "[[fault:400]]", {"a": "x"})
    assert e.value.kind == "http_status" and e.value.attempts == 1 and "400" in e.value.message
    with pytest.raises(RewardAnythingError) as e:
        client.judge("p", "[[fault:malformed]]", {"a": "x"})
    assert e.value.kind == "no_json_object"
    # Retries: two failures then success with max_retries=3.
    r = Client(mock.url, max_retries=3).judge("p", "[[fail-first:2:503]] q", {"a": "score=3"})
    assert r.scores == {"a": 3.0} and r.attempts == 3
    # Unreachable server: transport-level kind, not a hang.
    dead = Client("http://127.0.0.1:9/v1", model="m", max_retries=0)
    with pytest.raises(RewardAnythingError) as e:
        dead.judge("p", "q", {"a": "x"})
    assert e.value.kind == "transport"


@pytest.mark.parametrize(
    "call, exc, words",
    [
        (lambda c: c.judge(1, "q", {"a": "x"}), TypeError, "principle must be a str, not int"),
        (lambda c: c.judge("p", None, {"a": "x"}), TypeError, "prompt must be a str"),
        (lambda c: c.judge("p", "q", {}), ValueError, "responses is empty"),
        (lambda c: c.judge("p", "q", []), ValueError, "responses is empty"),
        # The client library's request rules (JudgeRequest::validate), as ValueErrors.
        (lambda c: c.judge(" \t", "q", {"a": "x"}), ValueError, "principle is blank"),
        (
            lambda c: c.judge("p", "q", [str(i) for i in range(65)]),
            ValueError,
            "responses has 65 responses: a request holds at most 64",
        ),
        (
            lambda c: c.judge_batch([{"principle": "p", "prompt": "q", "responses": {"a": "x"}},
                                     {"principle": "", "prompt": "q", "responses": {"a": "x"}}]),
            ValueError,
            "requests[1].principle is blank",
        ),
        (lambda c: c.judge("p", "q", {"a": 3}), TypeError, 'responses["a"] must be a str'),
        (lambda c: c.judge("p", "q", ["x", b"y"]), TypeError, "responses[1] must be a str, not bytes"),
        (lambda c: c.judge("p", "q", "abc"), TypeError, "responses must be a dict"),
        (lambda c: c.judge("p", "q", {"a": "x"}, mask_responses=1), TypeError, "mask_responses must be a bool"),
        (lambda c: c.judge_batch("nope"), TypeError, "requests must be a list"),
        (lambda c: c.judge_batch([{"principle": "p", "prompt": "q", "responses": {"a": "x"}}, 5]), TypeError, "requests[1] must be a dict"),
        (lambda c: c.judge_batch([{"principle": "p", "responses": {"a": "x"}}]), ValueError, 'requests[0] has no "prompt" field'),
        (
            lambda c: c.judge_batch([{"principle": "p", "prompt": "q", "responses": {"a": "x"}}] * 3
                                    + [{"principle": "p", "prompt": "q", "responses": {"a": "x", "b": None}}]),
            TypeError,
            'requests[3].responses["b"] must be a str, not NoneType',
        ),
    ],
)
def test_bad_input_raises_before_any_call(mock, call, exc, words):
    client = Client(mock.url)
    with pytest.raises(exc) as e:
        call(client)
    assert words in str(e.value)
    with pytest.raises(exc):
        asyncio.run(_async_bad(client, call))
    assert mock.stop()["chat_requests"] == 0


async def _async_bad(client, call):
    # The same checks run when the coroutine is created, before anything is awaited.
    if "judge_batch" in call.__code__.co_names:
        return await client.ajudge_batch(*_args_of(call))
    return await client.ajudge(*_args_of(call))


def _args_of(call):
    class Spy:
        def judge(self, *a, **k):
            raise _Captured(a, k)

        judge_batch = judge

    try:
        call(Spy())
    except _Captured as c:
        if c.kwargs:
            return c.args + tuple(c.kwargs.values())
        return c.args
    raise AssertionError("not called")


class _Captured(Exception):
    def __init__(self, args, kwargs):
        super().__init__()
        self.args, self.kwargs = args, kwargs


def test_client_settings_are_checked(monkeypatch):
    for kwargs, words in [
        ({"concurrency": 0}, "concurrency"),
        ({"timeout": 0.0}, "timeout"),
        ({"timeout": float("nan")}, "timeout"),
        ({"max_retries": -1}, "max_retries"),
        ({"masking": "bogus"}, "masking"),
        ({"temperature": -1.0}, "temperature"),
        ({"max_tokens": 0}, "max_tokens"),
    ]:
        with pytest.raises(ValueError, match=words):
            Client("http://127.0.0.1:8000/v1", **kwargs)
    with pytest.raises(ValueError, match="ftp"):
        Client("ftp://h/v1")
    with pytest.raises(ValueError, match="empty"):
        Client([])
    with pytest.raises(TypeError):
        Client(42)
    assert Client(["http://a:1/v1", "http://b:2/v1"], masking="seeded:7").endpoints == ["http://a:1/v1", "http://b:2/v1"]
    monkeypatch.setenv("RA_ENDPOINT", "http://127.0.0.1:4321/v1")
    assert Client().endpoints == ["http://127.0.0.1:4321/v1"]
    monkeypatch.delenv("RA_ENDPOINT")
    assert Client().endpoints == ["http://127.0.0.1:8000/v1"]
    # The password of an endpoint URL is never shown.
    c = Client("http://user:secret@127.0.0.1:1/v1", api_key="sk-hidden")
    assert "secret" not in repr(c) and "sk-hidden" not in repr(c)


def test_from_endpoints_file(mock, tmp_path):
    path = tmp_path / "endpoints.json"
    path.write_text(json.dumps({"endpoints": [mock.url], "model": "from-file", "pid": 1}))
    client = Client.from_endpoints_file(path)
    assert type(client) is Client  # the package's class, with its async methods
    assert client.model == "from-file" and client.endpoints == [mock.url]
    assert Client.from_endpoints_file(str(path), model="other").model == "other"
    # Other keyword arguments go to Client(...), which checks them.
    c = Client.from_endpoints_file(path, model=None, concurrency=3)
    assert c.concurrency == 3 and c.model == "from-file"
    with pytest.raises(ValueError, match="concurrency"):
        Client.from_endpoints_file(path, concurrency=0)
    with pytest.raises(TypeError):
        Client.from_endpoints_file(path, bogus=1)
    path.write_text(json.dumps({"endpoints": []}))
    with pytest.raises(ValueError, match="no endpoint"):
        Client.from_endpoints_file(path)
    with pytest.raises(ValueError, match="missing.json"):
        Client.from_endpoints_file(tmp_path / "missing.json")


def test_async_calls_share_the_concurrency_limit(start_mock):
    mock = start_mock("--latency-ms", "150")
    client = Client(mock.url, concurrency=4)

    async def main():
        singles = [client.ajudge("p", f"q{i}", {"a": f"score={i % 5 + 1}"}) for i in range(12)]
        batch = client.ajudge_batch(
            [{"principle": "p", "prompt": f"b{i}", "responses": {"a": f"score={(i + 1) % 5 + 1}"}} for i in range(8)]
        )
        return await asyncio.gather(*singles, batch)

    *singles, batch = asyncio.run(main())
    assert [r.scores["a"] for r in singles] == [i % 5 + 1 for i in range(12)]
    assert [r.scores["a"] for r in batch] == [(i + 1) % 5 + 1 for i in range(8)]
    stats = mock.stop()
    assert stats["chat_requests"] == 20
    assert 1 < stats["max_in_flight"] <= 4


def test_ajudge_raises_and_batch_errors_in_place(mock):
    client = Client(mock.url, max_retries=0)

    async def main():
        with pytest.raises(RewardAnythingError) as e:
            await client.ajudge("p", "[[fault:400]]", {"a": "x"})
        assert e.value.kind == "http_status"
        return await client.ajudge_batch(
            [{"principle": "p", "prompt": "[[fault:malformed]]", "responses": ["x"]}, {"principle": "p", "prompt": "q", "responses": ["score=5"]}]
        )

    bad, good = asyncio.run(main())
    assert bad.error["kind"] == "no_json_object" and good.scores == {"response-1": 5.0}


class _PythonEngine(http.server.BaseHTTPRequestHandler):
    """A chat-completions endpoint written in Python: it can only answer while the
    calling thread has released the GIL."""

    def do_POST(self):
        self.rfile.read(int(self.headers["Content-Length"]))
        answer = '<think>ok</think>{"scores": {"response-1": 4}, "best-to-worst": ["response-1"]}'
        body = json.dumps(
            {
                "id": "c",
                "object": "chat.completion",
                "model": "m",
                "choices": [{"index": 0, "message": {"role": "assistant", "content": answer}, "finish_reason": "stop"}],
                "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
            }
        ).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


def test_the_gil_is_released_while_waiting():
    # The engine runs on a Python thread of this process: were the GIL held while
    # judge_batch waits, it could never answer and the attempt would time out.
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _PythonEngine)
    serving = threading.Thread(target=server.serve_forever, daemon=True)
    serving.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/v1"
        client = Client(url, model="m", masking="none", timeout=20.0, max_retries=0)
        (result,) = client.judge_batch([{"principle": "p", "prompt": "q", "responses": ["x"]}])
        assert result.ok, result.error
        assert result.scores == {"response-1": 4.0}
    finally:
        server.shutdown()
        server.server_close()


CHILD = textwrap.dedent(
    """
    import sys, time
    from rewardanything_rs import Client
    client = Client(sys.argv[1])
    requests = [{"principle": "p", "prompt": f"q{i} [[fault:hang]]", "responses": ["x"]} for i in range(300)]
    print("started", flush=True)
    t0 = time.monotonic()
    try:
        client.judge_batch(requests)
        print("finished", flush=True)
    except KeyboardInterrupt:
        print(f"interrupted after {time.monotonic() - t0:.2f}s", flush=True)
    """
)


def test_ctrl_c_cancels_a_blocking_batch(start_mock):
    mock = start_mock()
    child = subprocess.Popen([sys.executable, "-c", CHILD, mock.url], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "started"
        time.sleep(1.0)  # the requests are on the wire (the mock hangs them)
        child.send_signal(signal.SIGINT)
        out, err = child.communicate(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert "interrupted after" in out, (out, err)
    assert child.returncode == 0
    # The requests were on the wire (hung by the mock: without the interrupt the child
    # would wait out the 600 s timeout, and communicate() above would time out).
    assert mock.stop()["hung"] > 0


def test_version():
    # The one version: the workspace's Cargo.toml, which maturin also gives the wheel.
    cargo = (Path(__file__).resolve().parents[3] / "Cargo.toml").read_text()
    workspace = re.search(r'^\[workspace\.package\][^\[]*?^version = "([^"]+)"', cargo, re.M | re.S)
    assert workspace, "no [workspace.package] version in Cargo.toml"
    assert rewardanything_rs.__version__ == workspace.group(1)
    assert importlib.metadata.version("rewardanything-rs") == workspace.group(1)


def test_cancelling_an_ajudge_frees_its_slot(mock):
    client = Client(mock.url, concurrency=1)

    async def main():
        with pytest.raises(asyncio.TimeoutError):
            await asyncio.wait_for(client.ajudge("p", "[[fault:hang]]", ["x"]), 0.5)
        # The only slot was given back when the hung call was cancelled.
        return await asyncio.wait_for(client.ajudge("p", "q", ["score=2"]), 30)

    assert asyncio.run(main()).scores == {"response-1": 2.0}


FORK_CHILD = textwrap.dedent(
    """
    import asyncio, os, sys
    from rewardanything_rs import Client
    parent = Client(sys.argv[1])
    assert parent.judge("p", "q", ["score=3"]).scores == {"response-1": 3.0}  # runtime started
    pid = os.fork()
    if pid == 0:
        for call in (lambda: parent.judge("p", "q", ["x"]),
                     lambda: parent.judge_batch([{"principle": "p", "prompt": "q", "responses": ["x"]}])):
            try:
                call()
                os._exit(3)
            except RuntimeError as e:
                if "another process" not in str(e):
                    os._exit(4)
        child = Client(sys.argv[1])
        ok = child.judge("p", "q", ["score=4"]).scores == {"response-1": 4.0}
        ok = ok and asyncio.run(child.ajudge("p", "q", ["score=2"])).scores == {"response-1": 2.0}
        os._exit(0 if ok else 5)
    _, status = os.waitpid(pid, 0)
    print("child", os.waitstatus_to_exitcode(status), flush=True)
    """
)


def test_a_forked_child_makes_its_own_client(mock):
    out = subprocess.run([sys.executable, "-c", FORK_CHILD, mock.url], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "child 0", (out.stdout, out.stderr)


def test_ajudge_is_a_coroutine_function(mock):
    import inspect

    client = Client(mock.url)
    assert inspect.iscoroutinefunction(client.ajudge) and inspect.iscoroutinefunction(client.ajudge_batch)
    assert asyncio.run(client.ajudge("p", "q", ["score=5"])).scores == {"response-1": 5.0}
    # Bad input still raises before any request.
    with pytest.raises(TypeError, match="prompt must be a str"):
        asyncio.run(client.ajudge("p", 7, ["x"]))


def test_empty_batches(mock):
    client = Client(mock.url)
    assert client.judge_batch([]) == []

    async def main():
        return await client.ajudge_batch([])

    assert asyncio.run(main()) == []
