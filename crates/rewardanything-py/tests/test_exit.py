"""The package never crashes the interpreter (issue 16 §3): a process that cancelled an
``ajudge`` against a slow server exits cleanly, every time; an event loop closed with
an ``ajudge`` pending cancels the judgment (nothing printed); absurd timeouts are
refused. Each script runs in its own interpreter, as a user's would."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from rewardanything_rs import Client

#: Cancel an ajudge that the server answers after 3 s, then exit at once.
CANCELLED_AJUDGE = textwrap.dedent(
    """
    import asyncio, sys
    from rewardanything_rs import Client
    client = Client(sys.argv[1], model="RewardAnything-8B-v1", max_retries=0)
    async def main():
        try:
            await asyncio.wait_for(client.ajudge("p", "q [[latency-ms:3000]]", {"a": "score=3"}), 0.05)
        except asyncio.TimeoutError:
            pass
        else:
            sys.exit(7)
    asyncio.run(main())
    """
)

#: What a crash at exit prints (the issue saw each of them).
CRASH_SIGNS = ("Fatal Python error", "panicked", "not initialized", "PyGILState", "Traceback", "Exception ignored")

RUNS = 100
AT_ONCE = 10


def test_exit_after_a_cancelled_ajudge_is_clean_every_time(start_mock):
    mock = start_mock()
    failures = []
    for start in range(0, RUNS, AT_ONCE):
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", CANCELLED_AJUDGE, mock.url],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
            )
            for _ in range(start, min(start + AT_ONCE, RUNS))
        ]
        for p in procs:
            try:
                out, err = p.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()
                out, err = p.communicate()
                failures.append(("timeout", out, err))
                continue
            if p.returncode != 0 or any(sign in err for sign in CRASH_SIGNS):
                failures.append((p.returncode, out, err))
    assert not failures, f"{len(failures)} of {RUNS} runs crashed; first: {failures[0]}"


#: An event loop closed while an ajudge on a hung request is pending; then, with one
#: slot of concurrency, a blocking judge that can only start once that slot is free.
CLOSED_LOOP = textwrap.dedent(
    """
    import asyncio, sys
    from rewardanything_rs import Client
    client = Client(sys.argv[1], model="RewardAnything-8B-v1", concurrency=1, max_retries=0)
    loop = asyncio.new_event_loop()
    task = loop.create_task(client.ajudge("p", "[[fault:hang]]", {"a": "x"}))
    loop.run_until_complete(asyncio.sleep(0.3))
    assert not task.done()
    loop.close()
    print(client.judge("p", "q", {"a": "score=4"}).scores["a"], flush=True)
    """
)


def test_closing_the_loop_cancels_a_pending_ajudge(start_mock):
    mock = start_mock()
    out = subprocess.run([sys.executable, "-c", CLOSED_LOOP, mock.url], capture_output=True, text=True, timeout=30)
    assert out.returncode == 0, out.stderr
    # The follow-up judgment got the only slot: the hung one was cancelled.
    assert out.stdout.strip() == "4.0", (out.stdout, out.stderr)
    assert "Event loop is closed" not in out.stderr and "Traceback" not in out.stderr, out.stderr
    stats = mock.stop()
    # At most the hung request and the follow-up reached the server.
    assert stats["chat_requests"] <= 2 and stats["by_status"] == {200: 1}, stats


@pytest.mark.parametrize("timeout", [1e-9, 0.0009, 0.0, -1.0, float("inf"), 8 * 86400.0])
def test_timeouts_below_a_millisecond_or_above_a_week_are_refused(timeout):
    with pytest.raises(ValueError, match="timeout"):
        Client("http://127.0.0.1:9/v1", timeout=timeout)


def test_a_millisecond_timeout_is_accepted():
    assert Client("http://127.0.0.1:9/v1", timeout=0.001).concurrency == 256
