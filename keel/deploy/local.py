"""local: ``keel serve`` in the background on this machine, with a pid file and a log file.

``apply`` starts the server in its own session (it outlives the command that
started it), waits until ``/v2/health/ready`` answers, and fails with the
log's last lines if it exits first. ``delete`` sends SIGTERM (the server
drains in-flight requests), then SIGKILL after a grace period. A pid is
trusted only while its command line is still keel serve, so a recycled pid
is never signalled.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any, Mapping

from keel.deploy.base import DeploySpec, Plan, Target
from keel.deploy.render import READY, header, serve_flags, served_name
from keel.errors import Conflict, KeelError

PID_FILE = "keel-serve.pid"
LOG_FILE = "keel-serve.log"
SCRIPT = "serve.sh"
HOST = "127.0.0.1"
READY_TIMEOUT = 180.0
STOP_TIMEOUT = 45.0


def command(spec: DeploySpec) -> list[str]:
    host = spec.options.get("host") or HOST
    uri = spec.model_uri if spec.model_uri.startswith(("models:/", "runs:/")) else f"{served_name(spec)}={spec.model_uri}"
    return [sys.executable, "-m", "keel.cli.main", "serve", uri, "--host", host, "--port", str(spec.port),
            *serve_flags(spec)]


def port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


class LocalTarget(Target):
    name = "local"
    starts = True

    def check(self, spec: DeploySpec) -> None:
        super().check(spec)
        host = spec.options.get("host") or HOST
        if not port_free(host, spec.port):
            raise Conflict(f"port {spec.port} on {host} is already in use (by another deployment or program); "
                           f"choose another with --port, or stop what holds it (keel deployments list)")

    def plan(self, spec: DeploySpec) -> Plan:
        script = f"#!/bin/sh\n# {header(spec)}\nexec {shlex.join(command(spec))}\n"
        return Plan({SCRIPT: script.encode()}, executable=frozenset({SCRIPT}),
                    notes=("keel deployments stop ID ends it",))

    def apply(self, spec: DeploySpec, out: Path) -> dict[str, Any]:
        host = spec.options.get("host") or HOST
        env = {k: v for k, v in os.environ.items() if not k.startswith("KEEL_")}
        if spec.settings is not None:  # the server reads the same store, as the same actor, as the deploying command
            settings = spec.settings
            env.update({"KEEL_HOME": str(Path(settings.home).absolute()), "KEEL_STORE_URI": settings.store_uri,
                        "KEEL_ARTIFACT_URI": settings.artifact_uri, "KEEL_USER": settings.user})
            env.update({k: v for k, v in (("KEEL_TOKEN", settings.token),
                                          ("KEEL_TRACKING_URI", settings.tracking_uri)) if v})
        env.update(spec.profile.env)
        log = out / LOG_FILE
        with log.open("ab") as sink:
            proc = subprocess.Popen(command(spec), stdout=sink, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                    env=env, cwd=out, start_new_session=True)
        url = f"http://{host}:{spec.port}"
        state = {"pid": proc.pid, "host": host, "port": spec.port, "url": url, "log": str(log),
                 "pid_file": str(out / PID_FILE)}
        try:
            (out / PID_FILE).write_text(f"{proc.pid}\n")
            deadline = time.monotonic() + READY_TIMEOUT
            while time.monotonic() < deadline:
                if proc.poll() is not None:
                    raise KeelError(f"keel serve exited with status {proc.returncode} before it was ready; the last "
                                    f"lines of {log}:\n{_tail(log)}")
                if _ready(url):
                    return state
                time.sleep(0.2)
            raise KeelError(f"keel serve did not become ready within {READY_TIMEOUT:.0f} s; see {log}:\n{_tail(log)}")
        except BaseException:  # Ctrl-C included: no server is left running that no deployment records
            self.delete(out, state)
            raise

    def status(self, out: Path, state: Mapping[str, Any]) -> str:
        pid = state.get("pid")
        return "running" if isinstance(pid, int) and _is_our_server(pid, state.get("port")) else "stopped"

    def delete(self, out: Path, state: Mapping[str, Any]) -> None:
        pid = state.get("pid")
        if not isinstance(pid, int) or not _is_our_server(pid, state.get("port")):
            return
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + STOP_TIMEOUT
        while time.monotonic() < deadline:
            if _gone(pid):
                break
            time.sleep(0.1)
        else:
            os.kill(pid, signal.SIGKILL)
            while not _gone(pid):
                time.sleep(0.05)
        Path(out, PID_FILE).unlink(missing_ok=True)


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url + READY, timeout=2) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):
        return False


def _gone(pid: int) -> bool:
    """True once ``pid`` has exited (reaping it if it is our own child)."""
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done:
            return True
    except ChildProcessError:
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:  # alive, but another user's: a recycled pid, not our server
        return False
    return _proc_state(pid) == "Z"


def _proc_state(pid: int) -> str | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None


def _is_our_server(pid: int, port: Any = None) -> bool:
    """``pid`` is alive and still runs this deployment's keel serve (not a recycled pid, not another deployment's)."""
    if _gone(pid):
        return False
    try:
        os.kill(pid, 0)
    except PermissionError:
        return False  # another user's process
    try:
        argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return True  # no /proc (macOS): the pid is alive; trust the pid file
    ours = b"keel.cli.main" in argv and b"serve" in argv
    if ours and port is not None:
        at = [i for i, a in enumerate(argv) if a == b"--port"]
        ours = any(i + 1 < len(argv) and argv[i + 1] == str(port).encode() for i in at)
    return ours


def _tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").strip().splitlines()[-lines:])
    except OSError:
        return "(no log)"
