"""Starting and stopping a real `keel serve` process for the serving tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import requests

ROOT = Path(__file__).parent


@dataclass
class Server:
    url: str
    port: int
    proc: subprocess.Popen
    home: Path
    env: dict[str, str]

    log: Path

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 60) -> str:
        """Stop the server (SIGTERM: gracefully) and return what it wrote."""
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        return self.log.read_text()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(home: Path, *args: str, env_extra: dict[str, str] | None = None) -> Server:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
    env.update({"KEEL_HOME": str(home), "KEEL_USER": "server", "PYTHONPATH": str(ROOT), **(env_extra or {})})
    log = home.parent / f"serve-{port}.log"  # a file, not a pipe: a full pipe would stall the server
    with log.open("w") as out:
        proc = subprocess.Popen([sys.executable, "-m", "keel.cli.main", "serve", *args, "--port", str(port)],
                                env=env, stdout=out, stderr=subprocess.STDOUT, text=True)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"keel serve exited {proc.returncode}: {log.read_text()}")
        try:
            if requests.get(f"{url}/v2/health/ready", timeout=1).status_code == 200:
                return Server(url, port, proc, home, env, log)
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise AssertionError("keel serve did not become ready in 120 s")
