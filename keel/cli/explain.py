"""`keel explain`: placeholder being written in this session (see keel/cli/main.py)."""

from __future__ import annotations

import typer


def explain(ctx: typer.Context) -> None:
    """Not yet available."""
    raise typer.Exit(2)
