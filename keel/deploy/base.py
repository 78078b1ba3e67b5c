"""The deploy target interface, the plain data it works on, and the plug-in table.

A target turns a :class:`DeploySpec` (a resolved model bundle, a resource
profile, options) into a :class:`Plan` (relative path -> file content), a pure
function that writes nothing. Writing the plan is shared
(:mod:`keel.deploy.files`); ``apply`` then does what the target does beyond
files (start a process, build an image), and ``status``/``delete`` look after
what ``apply`` started. Adding a target is one module and one line in
:data:`TARGETS`; a target's module is imported only when it is used.
"""

from __future__ import annotations

import importlib
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar, Mapping

from keel.deploy.profiles import Profile
from keel.errors import InvalidInput

# name -> "module:Class", imported lazily (no registry filled at import time).
TARGETS: dict[str, str] = {
    "local": "keel.deploy.local:LocalTarget",
    "systemd": "keel.deploy.systemd:SystemdTarget",
    "docker": "keel.deploy.docker:DockerTarget",
    "kubernetes": "keel.deploy.kubernetes:KubernetesTarget",
    "kserve": "keel.deploy.kserve:KServeTarget",
    "job": "keel.deploy.job:JobTarget",
    "edge": "keel.deploy.edge:EdgeTarget",
}
DEFAULT_PORT = 8080
# The user id containers and units run as: not root, not a common host uid.
RUN_AS_UID = 10001
_NAME = re.compile(r"^[a-z]([-a-z0-9]{0,38}[a-z0-9])?$")


@dataclass(frozen=True)
class DeploySpec:
    """Everything a target needs, resolved up front. ``bundle`` is a hash-verified local folder."""

    target: str
    name: str
    model_uri: str
    bundle: Path
    bundle_files: Mapping[str, str]  # relative path -> sha256, keel.yaml included
    manifest: Mapping[str, Any]
    profile: Profile = field(default_factory=Profile)
    model_name: str | None = None
    model_version: int | None = None
    port: int = DEFAULT_PORT
    image: str | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
    # What ``prepare`` computed for ``plan`` (e.g. the edge target's ONNX bytes).
    extras: Mapping[str, Any] = field(default_factory=dict)
    # The caller's settings (store, artifacts) for targets that read the store; never rendered.
    settings: Any = field(default=None, compare=False, repr=False)

    @property
    def labels(self) -> dict[str, str]:
        labels = {"app.kubernetes.io/name": self.name, "app.kubernetes.io/managed-by": "keel",
                  "keel.dev/stage": self.profile.stage}
        if self.model_name:
            labels["keel.dev/model"] = _label(self.model_name)
        if self.model_version is not None:
            labels["keel.dev/version"] = str(self.model_version)
        return labels

    def with_extras(self, **extras: Any) -> "DeploySpec":
        return replace(self, extras={**self.extras, **extras})


@dataclass(frozen=True)
class Plan:
    """Files a target writes: relative path -> bytes, or a local file to copy as is."""

    files: Mapping[str, bytes | Path]
    executable: frozenset[str] = frozenset()
    notes: tuple[str, ...] = ()  # what the user does next, printed by the CLI


class Target:
    """Base class of deploy targets. Subclasses implement :meth:`plan`; the rest is optional."""

    name: ClassVar[str]
    # Whether the target can give a model a GPU (a scheduler that places it on one).
    gives_gpu: ClassVar[bool] = False
    # Whether apply starts something that status/delete look after.
    starts: ClassVar[bool] = False

    def check(self, spec: DeploySpec) -> None:
        """Refuse a spec before anything is written (base: the GPU rule)."""
        if spec.profile.gpu and not self.gives_gpu:
            capable = ", ".join(n for n in TARGETS if get_target(n).gives_gpu)
            raise InvalidInput(
                f"profile {spec.profile.stage!r} asks for gpu = {spec.profile.gpu}, but the {self.name} target "
                f"cannot provision a GPU (it does not schedule hardware); set gpu = 0 in "
                f"[profiles.{spec.profile.stage}] or deploy with --target {capable}")

    def prepare(self, spec: DeploySpec) -> DeploySpec:
        """Heavy or I/O work ``plan`` depends on, before anything is written (base: none)."""
        return spec

    def plan(self, spec: DeploySpec) -> Plan:
        raise NotImplementedError

    def apply(self, spec: DeploySpec, out: Path) -> dict[str, Any]:
        """Act on the written files; returns state to record (base: nothing to do)."""
        return {}

    def status(self, out: Path, state: Mapping[str, Any]) -> str:
        """``running``/``stopped`` for targets that start something; else ``written``."""
        return "written"

    def delete(self, out: Path, state: Mapping[str, Any]) -> None:
        """Stop what ``apply`` started (base: nothing; files stay for the user)."""


def get_target(name: str) -> Target:
    """An instance of the target called ``name`` (its module imported now)."""
    try:
        module, _, cls = TARGETS[name].partition(":")
    except (KeyError, TypeError):
        raise InvalidInput(f"unknown deploy target {name!r}; choose one of {', '.join(TARGETS)}") from None
    return getattr(importlib.import_module(module), cls)()


def deployment_name(text: str) -> str:
    """A DNS-1035 label (Kubernetes object names, systemd units, images) derived from ``text``."""
    slug = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    slug = re.sub(r"-{2,}", "-", slug)
    if not slug or not slug[0].isalpha():
        slug = f"m-{slug}".rstrip("-")
    return slug[:40].rstrip("-")


def check_name(name: Any) -> str:
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidInput(f"deployment name must be a lower-case DNS label (letters, digits, '-', starting with a "
                           f"letter, at most 40), got {name!r}")
    return name


def _label(text: str) -> str:
    value = re.sub(r"[^A-Za-z0-9_.-]+", "-", text)[:63].strip("-_.")
    return value or "model"
