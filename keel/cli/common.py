"""Shared CLI plumbing: the client from global options, output helpers."""

from __future__ import annotations

import json
import sys
from dataclasses import asdict, is_dataclass
from datetime import datetime, timezone
from typing import Any

import typer
from rich.console import Console

from keel.settings import Settings

# In a pipe or a file there is no terminal width to respect: use a wide one so
# ids and tables are not cut at 80 columns.
out = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def settings_from(ctx: typer.Context) -> Settings:
    root = ctx.find_root()
    overrides = (root.obj or {}).get("overrides", {})
    return Settings.load(overrides)


def client_from(ctx: typer.Context):
    from keel.tracking.client import Client

    return Client(settings_from(ctx))


def print_json(data: Any) -> None:
    """Machine output: plain JSON on stdout, no colour, no wrapping."""
    sys.stdout.write(json.dumps(_plain(data), indent=2, sort_keys=False, default=str, allow_nan=True) + "\n")


def _plain(data: Any) -> Any:
    if is_dataclass(data) and not isinstance(data, type):
        return _plain(asdict(data))
    if isinstance(data, dict):
        return {k: _plain(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return [_plain(v) for v in data]
    return data


def fmt_time(ms: int | None) -> str:
    if ms is None:
        return "-"
    return datetime.fromtimestamp(ms / 1000, tz=timezone.utc).strftime("%Y-%m-%d %H:%M:%S")


def fmt_duration(start: int, end: int | None) -> str:
    if end is None:
        return "-"
    seconds = (end - start) / 1000
    return f"{seconds:.1f}s" if seconds < 120 else f"{seconds / 60:.1f}m"


def fmt_value(value: float) -> str:
    return f"{value:.6g}" if isinstance(value, float) else str(value)
