"""Recreate a model's environment from its requirements.lock (``keel env build``).

The I/O shell around :mod:`keel.envs.lock`: it creates a virtual environment
and runs an installer (uv when it is on PATH, else venv + pip) on the lock.
"""

from __future__ import annotations

import os
import platform
import shutil
import subprocess
import sys
from collections.abc import Iterable
from pathlib import Path

from keel.envs.lock import LOCK_FILE, EnvironmentLock, _python_triple
from keel.errors import ConfigError, InvalidInput, KeelError

_INSTALLERS = ("auto", "uv", "pip")
_TAIL_LINES = 25
_PROBE = "import platform; print(platform.python_version()); print(platform.python_implementation())"


def build_environment(lock: EnvironmentLock, path: str | os.PathLike[str], *, python: str | None = None,
                      installer: str = "auto", extra: Iterable[str] = (), offline_ok: bool = True) -> Path:
    """Create a fresh virtual environment at ``path`` with the packages of ``lock``.

    The lock is written to ``path/requirements.lock`` and installed from there
    together with ``extra`` in one installer run, so that one resolution covers
    both (keel passes its own project path as an extra).

    Args:
        lock: The environment to recreate.
        path: Where to create it; must not exist, or be an empty folder.
        python: The interpreter to base it on (a path or a command on PATH; with
            uv also a version request such as ``"3.10"``). Defaults to this
            interpreter, which must then have the lock's major.minor version.
        installer: ``"uv"``, ``"pip"`` (``python -m venv`` + pip), or ``"auto"``:
            uv if it is on PATH, else pip.
        extra: More requirement specifiers to install (paths, ``name==version``...).
        offline_ok: Never download a Python interpreter (the default): only the
            package index is used. With ``False`` and uv, a Python of the lock's
            version that is not on this machine is fetched by uv, which needs
            internet access beyond the package index.

    Returns:
        The path of the new environment's interpreter.

    Raises:
        InvalidInput: ``path`` is not empty, ``installer`` is unknown, or an extra is an option.
        ConfigError: No interpreter of the lock's Python version is available, or uv was asked for but is missing.
        KeelError: Creating the environment or installing failed; the message ends with the installer's output.
    """
    target = Path(path).absolute()
    extras = [extra] if isinstance(extra, str) else list(extra)
    for spec in extras:
        if not isinstance(spec, str) or not spec.strip() or spec.lstrip().startswith("-"):
            raise InvalidInput(f"build_environment(): extra requirements must be specifiers or paths, got {spec!r}; "
                               "installer options are not accepted here")
    tool = _installer(installer)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise InvalidInput(f"cannot build an environment at {target}: it exists and is not an empty folder; "
                           "choose a new path or remove it")
    interpreter = _interpreter(lock, python, uv=tool is not None, offline_ok=offline_ok)

    created = not target.exists()
    try:
        if tool is not None:
            # An environment variable, not --python-downloads: older uv versions ignore it instead of failing.
            _run([tool, "venv", "--python", interpreter, str(target)],
                 f"uv could not create a virtual environment at {target}",
                 {"UV_PYTHON_DOWNLOADS": "never" if offline_ok else "automatic"})
        else:
            _run([interpreter, "-m", "venv", str(target)],
                 f"python -m venv could not create a virtual environment at {target}")
        env_python = _venv_python(target)
        lock_file = target / LOCK_FILE
        lock_file.write_text(lock.to_text())
        if tool is not None:
            command = [tool, "pip", "install", "--python", str(env_python), "-r", str(lock_file), *extras]
        else:
            # "python -m pip" rather than bin/pip: a long path breaks the pip script's shebang line.
            command = [str(env_python), "-m", "pip", "install", "--disable-pip-version-check", "--no-input",
                       "-r", str(lock_file), *extras]
        count = f"{len(lock.packages)} package{'s' if len(lock.packages) != 1 else ''}"
        _run(command, f"installing {LOCK_FILE} ({count}) into {target} failed")
    except BaseException:
        # A half-built environment would make the next attempt fail on "not empty".
        _clear(target, remove=created)
        raise
    return env_python


def find_uv() -> str | None:
    """uv on PATH, or installed beside this interpreter (``pip install uv`` in a venv not activated)."""
    beside = Path(sys.executable).parent / ("uv.exe" if os.name == "nt" else "uv")
    return shutil.which("uv") or (str(beside) if beside.is_file() else None)


def _installer(installer: str) -> str | None:
    """The uv executable to use, or None for venv + pip."""
    if installer not in _INSTALLERS:
        raise InvalidInput(f"build_environment(): installer must be one of {', '.join(_INSTALLERS)}, "
                           f"got {installer!r}")
    if installer == "pip":
        return None
    uv = find_uv()
    if uv is None and installer == "uv":
        raise ConfigError("installer='uv' was asked for, but uv is not on PATH; install it "
                          "(pip install uv) or use installer='pip'")
    return uv


def _interpreter(lock: EnvironmentLock, python: str | None, *, uv: bool, offline_ok: bool) -> str:
    """The interpreter (or, for uv, version request) to build from, checked against the lock."""
    wanted = _python_triple(lock.python)[:2]
    wanted_text = ".".join(map(str, wanted)) or lock.python
    if python is None:
        if sys.version_info[:2] == wanted and platform.python_implementation() == lock.implementation:
            return sys.executable
        if uv and not offline_ok:
            return wanted_text  # uv finds one on this machine or downloads it
        raise ConfigError(
            f"requirements.lock needs {lock.implementation} {wanted_text} (locked {lock.python}), but keel runs "
            f"{platform.python_implementation()} {platform.python_version()} ({sys.executable}); pass python= the path "
            f"of a Python {wanted_text} interpreter. uv can download one "
            "(offline_ok=False), but that needs internet access beyond the package index")
    found = shutil.which(python) or (python if Path(python).is_file() else None)
    if found is None:
        if uv:
            return python  # a uv version request such as "3.10" or "cpython@3.10"
        raise ConfigError(f"python={python!r} is not an interpreter on this machine (not a file, not on PATH); "
                          f"pass the path of a Python {wanted_text} interpreter")
    try:
        probe = subprocess.run([found, "-c", _PROBE], capture_output=True, text=True, timeout=60, check=True)
        version, implementation = probe.stdout.split()[:2]
    except (OSError, subprocess.SubprocessError, ValueError) as exc:
        raise ConfigError(f"python={python!r} ({found}) did not run as a Python interpreter: {exc}") from None
    if _python_triple(version)[:2] != wanted or implementation != lock.implementation:
        raise ConfigError(f"python={python!r} is {implementation} {version}, but requirements.lock needs "
                          f"{lock.implementation} {wanted_text} (locked {lock.python}); pass a matching interpreter")
    return found


def _clear(target: Path, *, remove: bool) -> None:
    """Remove what a failed build left: the folder if we created it, else its content."""
    if remove:
        shutil.rmtree(target, ignore_errors=True)
        return
    for child in target.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def _venv_python(target: Path) -> Path:
    return target / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def _run(command: list[str], failure: str, settings: dict[str, str] | None = None) -> None:
    env = {**os.environ, **(settings or {})}
    # Variables that would make the new environment see (and skip) packages from elsewhere.
    for name in ("PYTHONPATH", "PYTHONHOME", "PIP_USER", "PIP_TARGET", "PIP_PREFIX", "VIRTUAL_ENV"):
        env.pop(name, None)
    try:
        result = subprocess.run(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    except OSError as exc:
        raise KeelError(f"{failure}: cannot run {command[0]}: {exc}") from None
    if result.returncode != 0:
        tail = "\n".join(result.stdout.strip().splitlines()[-_TAIL_LINES:])
        raise KeelError(f"{failure} (exit status {result.returncode}); the last lines of its output:\n{tail}")
