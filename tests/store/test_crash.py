"""A process killed with SIGKILL while logging artifacts leaves the store consistent."""

from __future__ import annotations

import hashlib
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from keel.entities import RunStatus

pytestmark = pytest.mark.store

WORKER = textwrap.dedent("""
    import sys
    from keel.tracking.client import Client
    run_id, path, repeat = sys.argv[1], sys.argv[2], int(sys.argv[3])
    client = Client()
    print("ready", flush=True)
    for i in range(repeat):
        client.log_artifact(run_id, path, f"copy-{i}/{i}.bin")
""")


def _blobs(root: Path) -> list[Path]:
    return [p for p in (root / "sha256").rglob("*") if p.is_file()] if (root / "sha256").exists() else []


def _assert_consistent(client, raw_engine, run_id: str, artifact_root: Path) -> None:
    # Every visible blob is complete: its content hashes to its name.
    for blob in _blobs(artifact_root):
        assert hashlib.sha256(blob.read_bytes()).hexdigest() == blob.name, f"partial blob {blob}"
    # No metadata row points at missing content, and every one reads back verified.
    with raw_engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT path, sha256 FROM artifacts WHERE run_id = :r"), {"r": run_id}).all()
    for path, sha in rows:
        assert client.read_artifact(run_id, path)
        assert (artifact_root / "sha256" / sha[:2] / sha).is_file()
    assert client.get_run(run_id).status == RunStatus.RUNNING  # left running, not corrupt
    assert client.verify_audit().ok


def _start(keel_env, run_id: str, path: Path, repeat: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-c", WORKER, run_id, str(path), str(repeat)],
                            env=keel_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "ready", proc.stderr.read()
    return proc


def test_sigkill_during_a_large_blob_write(client, keel_env, settings, raw_engine, tmp_path):
    big = tmp_path / "big.bin"
    with open(big, "wb") as fh:  # sparse: instant to create, ~1 s to hash and copy
        fh.truncate(768 * 1024 * 1024)
    run = client.create_run("crash")
    root = Path(settings.artifact_uri)
    proc = _start(keel_env, run.id, big, 1)
    deadline = time.time() + 60
    while time.time() < deadline:  # kill as soon as the copy is under way
        partial = [p for p in (root / "tmp").iterdir() if p.stat().st_size > 0] if (root / "tmp").exists() else []
        if partial:
            break
        time.sleep(0.002)
    assert partial, "the worker never started writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    assert _blobs(root) == []  # the half-written content never became a blob
    _assert_consistent(client, raw_engine, run.id, root)
    assert client.list_artifacts(run.id) == []
    # The store keeps working: the same artifact can be logged afterwards.
    small = tmp_path / "small.bin"
    small.write_bytes(b"after the crash")
    client.log_artifact(run.id, small, "copy-0/0.bin")
    assert client.read_artifact(run.id, "copy-0/0.bin") == b"after the crash"


def test_sigkill_at_random_moments_of_many_small_writes(client, keel_env, settings, raw_engine, tmp_path):
    rng = random.Random(1234)
    run = client.create_run("crash-many")
    root = Path(settings.artifact_uri)
    for attempt in range(6):
        src = tmp_path / f"src-{attempt}.bin"
        src.write_bytes(os.urandom(256 * 1024))
        proc = _start(keel_env, run.id, src, 10_000)
        time.sleep(rng.uniform(0.05, 0.6))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        _assert_consistent(client, raw_engine, run.id, root)
    assert len(client.list_artifacts(run.id)) > 0  # the workers did get some writes through
