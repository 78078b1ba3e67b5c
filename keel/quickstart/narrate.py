"""Numbered lines, one per step of the story, that stay whole in pipes."""

from __future__ import annotations

from dataclasses import dataclass

from rich.console import Console

INDENT = 12  # "1. data     breast cancer ...", "10. audit   chain OK ..."


@dataclass
class Narrator:
    console: Console
    count: int = 0

    def step(self, tag: str, text: str) -> None:
        """Print the next numbered step, its text in the column where every step's text starts."""
        self.count += 1
        head = f"{self.count}. {tag}"
        self.console.print(f"{head:<{INDENT - 1}} {text}", markup=False, highlight=False)

    def more(self, text: str) -> None:
        """A continuation line of the current step, indented under its text."""
        self.console.print(f"{'':{INDENT}}{text}", markup=False, highlight=False)
