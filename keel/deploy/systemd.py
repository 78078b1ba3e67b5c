"""systemd: a unit and an environment file for an on-prem host, plus the files the unit runs.

The unit runs ``keel serve`` from a virtual environment built from the
serving lock, as the unprivileged ``keel`` user, restarts on failure, and is
sandboxed (no new privileges, read-only system, private /tmp). CPU and memory
from the profile become CPUQuota and MemoryMax. ``install.sh`` (run as root
on the host, from the folder) creates the user, the environment and the unit.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

from keel.deploy import runtime
from keel.deploy.base import DeploySpec, Plan, Target
from keel.deploy.profiles import cpu_millicores, memory_bytes
from keel.deploy.render import bundle_files, header, serve_args
from keel.errors import InvalidInput

USER = "keel"
_SAFE_PATH = re.compile(r"^/[A-Za-z0-9_./-]+$")


def install_dir(spec: DeploySpec) -> str:
    path = spec.options.get("install_dir") or f"/opt/keel/{spec.name}"
    if not _SAFE_PATH.match(path) or ".." in path.split("/"):
        raise InvalidInput(f"--install-dir must be an absolute path of letters, digits, '_', '.', '-', '/', "
                           f"without '..'; got {path!r}")
    return path.rstrip("/")


def unit_name(spec: DeploySpec) -> str:
    return f"keel-{spec.name}"


def unit(spec: DeploySpec) -> str:
    dest = install_dir(spec)
    state = f"/var/lib/keel/{spec.name}"
    command = [f"{dest}/venv/bin/python", "-m", "keel.cli.main", *serve_args(spec, f"{dest}/bundle")]
    lines = [
        f"# {header(spec)}",
        "[Unit]",
        f"Description=keel model server {spec.name} (stage {spec.profile.stage})",
        "After=network-online.target",
        "Wants=network-online.target",
        "",
        "[Service]",
        "Type=simple",
        f"User={USER}",
        f"Group={USER}",
        f"EnvironmentFile=/etc/keel/{spec.name}.env",
        f"WorkingDirectory={state}",
        f"ExecStart={shlex.join(command)}",
        "Restart=on-failure",
        "RestartSec=5",
        # keel serve drains in-flight requests on SIGTERM for up to 30 s.
        "KillSignal=SIGTERM",
        "TimeoutStopSec=45",
        "NoNewPrivileges=true",
        "ProtectSystem=strict",
        "ProtectHome=true",
        "PrivateTmp=true",
        f"ReadWritePaths={state}",
        "LimitNOFILE=65536",
    ]
    profile = spec.profile
    cpu = profile.cpu_limit or profile.cpu
    if cpu:
        lines.append(f"CPUQuota={max(1, cpu_millicores(cpu) // 10)}%")
    memory = profile.memory_limit or profile.memory
    if memory:
        lines.append(f"MemoryMax={memory_bytes(memory)}")
    lines += ["", "[Install]", "WantedBy=multi-user.target"]
    return "\n".join(lines) + "\n"


def env_file(spec: DeploySpec) -> str:
    env = {"KEEL_HOME": f"/var/lib/keel/{spec.name}", "KEEL_USER": USER,
           "PYTHONPATH": f"{install_dir(spec)}/{runtime.VENDOR}", **spec.profile.env}
    lines = [f"# {header(spec)}"]
    for key, value in env.items():
        quoted = value.replace("\\", "\\\\").replace('"', '\\"')
        lines.append(f'{key}="{quoted}"')
    return "\n".join(lines) + "\n"


def install_script(spec: DeploySpec) -> str:
    dest, name, unit_file = install_dir(spec), spec.name, unit_name(spec)
    return f"""#!/bin/sh
# {header(spec)}
# Run as root on the host, from this folder: installs keel serve as the systemd unit {unit_file}.
set -eu
cd "$(dirname "$0")"
id -u {USER} >/dev/null 2>&1 || useradd --system --home-dir /var/lib/keel --shell /usr/sbin/nologin {USER}
install -d -m 0755 {dest}
cp -R bundle {runtime.VENDOR} {runtime.LOCK} {dest}/
python3 -m venv {dest}/venv
{dest}/venv/bin/python -m pip install --no-input --disable-pip-version-check -r {dest}/{runtime.LOCK}
install -d -o {USER} -g {USER} -m 0750 /var/lib/keel/{name}
install -d -m 0755 /etc/keel
install -m 0640 -g {USER} {name}.env /etc/keel/{name}.env
install -m 0644 {unit_file}.service /etc/systemd/system/{unit_file}.service
systemctl daemon-reload
systemctl enable --now {unit_file}.service
echo "{unit_file} installed: systemctl status {unit_file}"
"""


class SystemdTarget(Target):
    name = "systemd"

    def check(self, spec: DeploySpec) -> None:
        super().check(spec)
        install_dir(spec)

    def prepare(self, spec: DeploySpec) -> DeploySpec:
        return spec.with_extras(lock=runtime.serving_lock(spec), keel=runtime.keel_sources())

    def plan(self, spec: DeploySpec) -> Plan:
        files: dict[str, bytes | Path] = {
            f"{unit_name(spec)}.service": unit(spec).encode(),
            f"{spec.name}.env": env_file(spec).encode(),
            "install.sh": install_script(spec).encode(),
            runtime.LOCK: spec.extras["lock"].encode(),
            **bundle_files(spec),
            **spec.extras["keel"],
        }
        return Plan(files, executable=frozenset({"install.sh"}),
                    notes=("copy {out} to the host and run: sudo sh install.sh",))
