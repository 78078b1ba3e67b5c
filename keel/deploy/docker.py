"""Docker: a complete build context (Dockerfile, bundle, lock, keel) and, with ``--build``, an image.

The image runs ``keel serve`` as a non-root user on a slim Python base of the
lock's Python version, with a HEALTHCHECK on the v2 live route. No Docker
daemon is needed: ``--build`` uses buildah where it is installed; without it
the context is complete for any builder (``docker build``, kaniko, buildah).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path
from typing import Any, Mapping

from keel.deploy import runtime
from keel.deploy.base import RUN_AS_UID, DeploySpec, Plan, Target
from keel.deploy.kubernetes import image as image_name
from keel.deploy.render import LIVE, bundle_files, header, serve_args
from keel.errors import ConfigError, KeelError

APP = "/app"
HOME = "/var/lib/keel"


def dockerfile(spec: DeploySpec, lock_text: str) -> str:
    """The Dockerfile text: pure over the spec and the lock."""
    python = runtime.python_minor(lock_text)
    entry = ["python", "-m", "keel.cli.main", *serve_args(spec, f"{APP}/bundle")[:2]]
    cmd = serve_args(spec, f"{APP}/bundle")[2:]
    probe = (f"import sys, urllib.request; "
             f"sys.exit(0 if urllib.request.urlopen('http://127.0.0.1:{spec.port}{LIVE}', timeout=4).status == 200 "
             f"else 1)")
    env = {"PYTHONDONTWRITEBYTECODE": "1", "PYTHONUNBUFFERED": "1", "PIP_NO_CACHE_DIR": "1",
           "PIP_DISABLE_PIP_VERSION_CHECK": "1", "PYTHONPATH": f"{APP}/{runtime.VENDOR}", "KEEL_HOME": HOME,
           "KEEL_USER": "keel-serve", **spec.profile.env}
    lines = [
        f"# {header(spec)}",
        f"FROM python:{python}-slim",
        # Docker substitutes $NAME inside ENV values, even quoted: a literal $ is escaped.
        *[f"ENV {k}={json.dumps(v).replace('$', chr(92) + '$')}" for k, v in env.items()],
        f"RUN groupadd --system --gid {RUN_AS_UID} keel \\",
        f" && useradd --system --uid {RUN_AS_UID} --gid keel --home-dir {HOME} --create-home --shell /usr/sbin/nologin keel",
        f"WORKDIR {APP}",
        "# Dependencies first: the layer is reused while the lock does not change.",
        f"COPY {runtime.LOCK} {APP}/{runtime.LOCK}",
        f"RUN pip install --no-input -r {APP}/{runtime.LOCK}",
        f"COPY {runtime.VENDOR} {APP}/{runtime.VENDOR}",
        f"COPY bundle {APP}/bundle",
        f"USER {RUN_AS_UID}:{RUN_AS_UID}",
        f"EXPOSE {spec.port}",
        "HEALTHCHECK --interval=30s --timeout=5s --start-period=60s --retries=3 \\",
        f"  CMD {json.dumps(['python', '-c', probe])}",
        f"ENTRYPOINT {json.dumps(entry)}",
        f"CMD {json.dumps(cmd)}",
    ]
    return "\n".join(lines) + "\n"


class DockerTarget(Target):
    name = "docker"

    def check(self, spec: DeploySpec) -> None:
        super().check(spec)
        if spec.options.get("build") and shutil.which("buildah") is None:
            raise ConfigError("--build needs buildah (a daemonless image builder), which is not on PATH; install "
                              "it, or deploy without --build and build the context with docker build, kaniko or "
                              "buildah elsewhere")

    def prepare(self, spec: DeploySpec) -> DeploySpec:
        return spec.with_extras(lock=runtime.serving_lock(spec), keel=runtime.keel_sources())

    def plan(self, spec: DeploySpec) -> Plan:
        lock = spec.extras["lock"]
        files: dict[str, bytes | Path] = {
            "Dockerfile": dockerfile(spec, lock).encode(),
            ".dockerignore": b"**/__pycache__\n**/*.pyc\n",
            runtime.LOCK: lock.encode(),
            **bundle_files(spec),
            **spec.extras["keel"],
        }
        tag = image_name(spec)
        return Plan(files, notes=(f"docker build -t {tag} {{out}}  (or buildah bud -t {tag} {{out}})",
                                  f"docker run --rm -p {spec.port}:{spec.port} {tag}"))

    def apply(self, spec: DeploySpec, out: Path) -> dict[str, Any]:
        tag = image_name(spec)
        if not spec.options.get("build"):
            return {"image": tag, "built": False}
        result = subprocess.run(["buildah", "bud", "--layers", "-t", tag, str(out)], stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True)
        if result.returncode != 0:
            tail = "\n".join(result.stdout.strip().splitlines()[-20:])
            raise KeelError(f"buildah could not build {tag} from {out} (exit {result.returncode}):\n{tail}")
        return {"image": tag, "built": True}

    def status(self, out: Path, state: Mapping[str, Any]) -> str:
        return "built" if state.get("built") else "written"
