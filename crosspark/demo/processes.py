"""Service processes started as an operator would start them (the demo and end-to-end tests)."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from collections import deque
from pathlib import Path

_LISTENING = re.compile(r"listening on (\S+)")


class ServiceProcess:
    """``crosspark ARGS`` in its own process; ``start`` waits for its "listening on ADDR" line.

    Its log goes to ``log_path`` (JSON lines), and the last lines are kept for error messages.
    """

    def __init__(self, name: str, args: list[str], *, log_path: Path, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.args = args
        self.log_path = log_path
        self.env = {**os.environ, **(env or {})}
        self.address: str | None = None
        self.process: subprocess.Popen[str] | None = None
        self._tail: deque[str] = deque(maxlen=40)

    def start(self, timeout: float = 60.0) -> str:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self.address = None
        self.process = subprocess.Popen(
            [sys.executable, "-m", "crosspark", "--log-format", "json", *self.args],
            env=self.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        ready = threading.Event()
        threading.Thread(target=self._pump, args=(ready,), name=f"log-{self.name}", daemon=True).start()
        if not ready.wait(timeout) or self.address is None:
            self.kill()
            raise RuntimeError(f"{self.name} did not start: " + " | ".join(self._tail))
        return self.address

    def _pump(self, ready: threading.Event) -> None:
        assert self.process is not None and self.process.stderr is not None
        with self.log_path.open("a", encoding="utf-8") as log:
            for line in self.process.stderr:
                log.write(line)
                log.flush()
                self._tail.append(line.strip())
                if self.address is None and (found := _LISTENING.search(line)):
                    self.address = found.group(1)
                    ready.set()
        ready.set()

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout: float = 30.0) -> int:
        """SIGTERM and wait: the graceful stop."""
        if self.process is None:
            return 0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
        return self.process.wait()

    def kill(self) -> None:
        """SIGKILL: the crash."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait()

    def tail(self) -> str:
        return "\n".join(self._tail)
