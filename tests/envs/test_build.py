"""keel env build: a real virtual environment from a lock (needs the package index)."""

from __future__ import annotations

import dataclasses
import importlib.metadata
import subprocess
import sys
from pathlib import Path

import pytest

from keel.envs.build import build_environment, find_uv
from keel.envs.lock import EnvironmentLock, capture
from keel.errors import ConfigError, InvalidInput, KeelError

# Check the package and keel's isolation from the dev venv in one interpreter start.
PROBE = (
    "import importlib.metadata as m, importlib.util as u, yaml; "
    "print(m.version('pyyaml')); print(u.find_spec('sklearn') is None)"
)


def _pyyaml_lock() -> EnvironmentLock:
    return capture(["pyyaml"], transitive=False)


def _check_built(python: Path, env: Path, lock: EnvironmentLock) -> None:
    assert python == env.absolute() / "bin" / "python"
    assert (env / "requirements.lock").read_text() == lock.to_text()
    out = subprocess.run([str(python), "-c", PROBE], capture_output=True, text=True, check=True).stdout.split()
    assert out == [importlib.metadata.version("pyyaml"), "True"]


def test_build_with_pip_installs_the_locked_version(tmp_path: Path) -> None:
    lock = _pyyaml_lock()
    env = tmp_path / "env"
    python = build_environment(lock, env, installer="pip")
    _check_built(python, env, lock)


def test_build_with_uv_installs_the_locked_version(tmp_path: Path) -> None:
    assert find_uv() is not None, "uv is a dev dependency: pip install -e '.[dev]'"
    lock = _pyyaml_lock()
    env = tmp_path / "env"
    python = build_environment(lock, env, installer="uv")
    _check_built(python, env, lock)


def test_installer_failure_shows_its_output_and_cleans_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PIP_NO_INDEX", "1")  # fail fast, without the network
    monkeypatch.delenv("PIP_FIND_LINKS", raising=False)
    lock = dataclasses.replace(_pyyaml_lock(), packages={"keel-no-such-package-xyz": "1.0"})
    env = tmp_path / "env"
    with pytest.raises(KeelError, match=r"(?s)installing requirements.lock .* failed.*keel-no-such-package-xyz"):
        build_environment(lock, env, installer="pip")
    assert not env.exists()


def test_refuses_a_folder_that_is_not_empty(tmp_path: Path) -> None:
    (tmp_path / "something").write_text("x")
    with pytest.raises(InvalidInput, match="exists and is not an empty folder"):
        build_environment(_pyyaml_lock(), tmp_path)
    assert (tmp_path / "something").exists()


def test_another_python_version_needs_an_interpreter(tmp_path: Path) -> None:
    lock = dataclasses.replace(_pyyaml_lock(), python="2.7.18")
    with pytest.raises(ConfigError, match=r"needs CPython 2\.7 \(locked 2\.7\.18\).*pass python="):
        build_environment(lock, tmp_path / "env", installer="pip")
    with pytest.raises(ConfigError, match=r"python=.* is CPython 3\..*needs CPython 2\.7"):
        build_environment(lock, tmp_path / "env", python=sys.executable, installer="pip")
    with pytest.raises(ConfigError, match="not an interpreter on this machine"):
        build_environment(lock, tmp_path / "env", python=str(tmp_path / "nope"), installer="pip")
    assert not (tmp_path / "env").exists()


def test_bad_arguments(tmp_path: Path) -> None:
    with pytest.raises(InvalidInput, match="installer must be one of auto, uv, pip, got 'conda'"):
        build_environment(_pyyaml_lock(), tmp_path / "env", installer="conda")
    with pytest.raises(InvalidInput, match="installer options are not accepted"):
        build_environment(_pyyaml_lock(), tmp_path / "env", extra=["--index-url=http://evil"])
