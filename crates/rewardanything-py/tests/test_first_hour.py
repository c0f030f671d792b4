"""Issue 17, point 5 (and the "nothing was sent" message), as a Python user meets them:
the URL of a reward server (`ra gateway`) given to `rewardanything_rs.Client`, and a URL
without its scheme."""

from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path
from typing import List

import pytest

from rewardanything_rs import Client, RewardAnythingError

REPO = Path(__file__).resolve().parents[3]
RA_BIN = Path(os.environ.get("RA_BIN", REPO / "target" / "debug" / "ra"))
LISTENING = "ra gateway: listening on "


@pytest.fixture
def gateway(mock, tmp_path):
    """`ra gateway` in front of the mock, on a port of its choosing; killed at teardown."""
    if not RA_BIN.exists():
        raise RuntimeError(f"{RA_BIN} not found: run `cargo build -p ra-cli` (or set RA_BIN)")
    env = {k: v for k, v in os.environ.items() if k not in ("RA_ENDPOINT", "RA_API_KEY", "RA_LOG")}
    proc = subprocess.Popen(
        [str(RA_BIN), "gateway", "--host", "127.0.0.1", "--port", "0", "--endpoint", mock.url,
         "--base-output-path", str(tmp_path / "jobs")],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    seen: List[str] = []
    found = threading.Event()

    def read() -> None:
        # Drained to the end: the gateway never blocks on a full pipe.
        for line in proc.stderr:
            seen.append(line)
            if line.startswith(LISTENING):
                found.set()

    threading.Thread(target=read, daemon=True).start()
    try:
        if not found.wait(30):
            raise RuntimeError(f"ra gateway did not start: {''.join(seen)}")
        line = next(line for line in seen if line.startswith(LISTENING))
        yield line[len(LISTENING):].split()[0]
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("suffix", ["", "/v1"])
def test_a_gateway_url_says_it_is_a_reward_server_and_what_to_give(gateway, suffix):
    client = Client(gateway + suffix, max_retries=0)
    with pytest.raises(RewardAnythingError) as e:
        client.judge("p", "q", {"a": "x score=3"})
    message = str(e.value)
    assert "is a RewardAnything reward server" in message, message
    assert "rewardanything.Client" in message and "OpenAI-compatible base URL" in message, message
    # "try …/v1" would only lead to another 404.
    assert "try " not in message, message


def test_a_url_without_scheme_says_add_http():
    for url in ["127.0.0.1:8100/v1", "localhost:8100/v1"]:
        with pytest.raises(ValueError) as e:
            Client(url)
        assert "add http://" in str(e.value) and "relative URL" not in str(e.value), str(e.value)


def test_a_judgment_never_sent_says_so_and_why():
    dead = Client("http://127.0.0.1:9/v1", max_retries=0)
    with pytest.raises(RewardAnythingError) as e:
        dead.judge("p", "q", {"a": "x"})
    assert e.value.attempts == 0
    assert "nothing was sent" in str(e.value) and "after 0 attempts" not in str(e.value), str(e.value)
