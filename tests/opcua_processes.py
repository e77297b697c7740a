"""``darkfab serve`` and ``darkfab supervise`` as subprocesses on 127.0.0.1, with timeouts: a test
that cannot reach its server fails, it never hangs."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

DARKFAB = [sys.executable, "-m", "darkfab.scenarios.cli"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Served:
    """``darkfab serve ARGS --port P`` running; ``url`` once it listens."""

    def __init__(self, tmp: Path, *args: str, start_timeout_s: float = 120.0) -> None:
        self.port = free_port()
        self.url = f"opc.tcp://127.0.0.1:{self.port}/darkfab/"
        self.err_path = tmp / f"serve-{self.port}.err"
        self.out_path = tmp / f"serve-{self.port}.out"
        self._files = (self.out_path.open("w"), self.err_path.open("w"))
        self.proc = subprocess.Popen([*DARKFAB, "serve", *args, "--port", str(self.port)],
                                     stdout=self._files[0], stderr=self._files[1])
        t_end = time.monotonic() + start_timeout_s
        while "serving " not in self.err():
            if self.proc.poll() is not None:
                raise AssertionError(f"darkfab serve exited {self.proc.returncode}: "
                                     f"{self.err()}")
            if time.monotonic() > t_end:
                self.kill()
                raise AssertionError(f"darkfab serve did not listen within "
                                     f"{start_timeout_s:g} s: {self.err()}")
            time.sleep(0.1)

    def err(self) -> str:
        return self.err_path.read_text()

    def wait(self, timeout_s: float = 120.0) -> int:
        """The exit code (the server is killed, and the test fails, after ``timeout_s``)."""
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            self.kill()
            raise AssertionError(f"darkfab serve still running after {timeout_s:g} s: "
                                 f"{self.err()}") from None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=30)
        for f in self._files:
            f.close()

    def __enter__(self) -> "Served":
        return self

    def __exit__(self, *exc) -> None:
        self.kill()


def darkfab(*args: str, timeout_s: float = 300.0) -> subprocess.CompletedProcess:
    return subprocess.run([*DARKFAB, *args], capture_output=True, text=True,
                          timeout=timeout_s)
