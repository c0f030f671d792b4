"""Fixtures: the workspace's ra-mock server, started per test on 127.0.0.1 and a free
port, and always stopped (its counters are read back from its exit report)."""

from __future__ import annotations

import os
import re
import subprocess
import threading
from pathlib import Path
from typing import Dict, List, Optional

import pytest

REPO = Path(__file__).resolve().parents[3]
MOCK_BIN = Path(os.environ.get("RA_MOCK_BIN", REPO / "target" / "debug" / "ra-mock"))

_REPORT = re.compile(
    r"ra-mock: (\d+) chat requests, by status \{(.*?)\}, dropped (\d+), hung (\d+), "
    r"cancelled (\d+), max in flight (\d+), max processing (\d+)"
)


class Mock:
    """A running ra-mock process."""

    def __init__(self, *args: str, host: str = "127.0.0.1"):
        if not MOCK_BIN.exists():
            raise RuntimeError(f"{MOCK_BIN} not found: run `cargo build -p ra-mock` (or set RA_MOCK_BIN)")
        self.proc = subprocess.Popen(
            [str(MOCK_BIN), "--host", host, "--port", "0", "--exit-on-stdin-eof", *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        line = self._first_line(timeout=20.0)
        if not line.startswith("listening on "):
            self.proc.kill()
            raise RuntimeError(f"ra-mock did not start: {line!r} {self.proc.stderr.read()}")
        self.url = line[len("listening on ") :].strip()
        self.stats: Optional[Dict[str, object]] = None

    def _first_line(self, timeout: float) -> str:
        out: List[str] = []
        reader = threading.Thread(target=lambda: out.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout)
        return out[0] if out else ""

    def stop(self) -> Dict[str, object]:
        """Stops the mock and returns its counters. Closing its stdin (it runs with
        --exit-on-stdin-eof) rather than a signal: a signal sent right after start could
        arrive before its handler is installed."""
        if self.stats is not None:
            return self.stats
        try:
            _, err = self.proc.communicate(timeout=20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, err = self.proc.communicate()
        m = _REPORT.search(err or "")
        if m is None:
            raise RuntimeError(f"no ra-mock report in its stderr: {err!r}")
        by_status = {int(k): int(v) for k, v in re.findall(r"(\d+): (\d+)", m.group(2))}
        self.stats = {
            "chat_requests": int(m.group(1)),
            "by_status": by_status,
            "dropped": int(m.group(3)),
            "hung": int(m.group(4)),
            "cancelled": int(m.group(5)),
            "max_in_flight": int(m.group(6)),
            "max_processing": int(m.group(7)),
        }
        return self.stats

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def start_mock():
    """`start_mock(*flags, host="127.0.0.1") -> Mock`; every mock started is killed at
    teardown."""
    started: List[Mock] = []

    def start(*args: str, host: str = "127.0.0.1") -> Mock:
        mock = Mock(*args, host=host)
        started.append(mock)
        return mock

    yield start
    for mock in started:
        mock.kill()


@pytest.fixture
def mock(start_mock) -> Mock:
    """An instant mock."""
    return start_mock()


@pytest.fixture
def env_client(monkeypatch, mock):
    """Points the process-wide client of the veRL/OpenRLHF functions at `mock`."""
    from rewardanything_rs import verl

    monkeypatch.setenv("RA_ENDPOINT", mock.url)
    monkeypatch.delenv("RA_API_KEY", raising=False)
    for name in ("RA_PRINCIPLE", "RA_NORMALIZE", "RA_FAILURE_REWARD", "RA_COALESCE_MS", "RA_MAX_GROUP_SIZE", "RA_GROUP_SIZE", "RA_GROUP_BACKEND", "RA_GROUP_WAIT_S", "RA_MODEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(verl, "_clients", None)
    monkeypatch.setattr(verl, "_coalescer", None)
    return mock
