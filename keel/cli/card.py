"""`keel card`: a version's model card as Markdown, HTML or JSON; write its fields; diff two versions."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from keel.cli.common import client_from, out, print_json

FORMATS = ("md", "html", "json")


def card(
    ctx: typer.Context,
    uri: str = typer.Argument(..., help="models:/NAME/VERSION or models:/NAME@ALIAS."),
    format: str = typer.Option("md", "--format", "-f", help="md, html or json."),
    out_file: Optional[Path] = typer.Option(None, "--out", "-o", help="Write to this file instead of stdout."),
    diff: Optional[str] = typer.Option(None, "--diff", metavar="OTHER_URI",
                                       help="Show what changed from URI's card to OTHER_URI's."),
    set_: Optional[list[str]] = typer.Option(
        None, "--set", metavar="FIELD=TEXT",
        help="Write a card field (repeat a FIELD for a list; FIELD= removes it), then show the card."),
    model_level: bool = typer.Option(False, "--model-level",
                                     help="With --set: write the model's own fields, which every version shows "
                                          "unless it overrides them (default: this version's)."),
) -> None:
    """Show the model card of a registered version, generated from what keel knows plus the fields people wrote."""
    from keel.errors import InvalidInput
    from keel.governance import card as render
    from keel.service.cards import build_card, update_card
    from keel.service.registry import resolve_uri

    if format not in FORMATS:
        raise InvalidInput(f"--format must be one of {', '.join(FORMATS)}, got {format!r}")
    if model_level and not set_:
        raise InvalidInput("--model-level only applies to --set FIELD=TEXT")
    service = client_from(ctx).ctx
    if set_:
        version = resolve_uri(service, uri)
        update_card(service, version.name, None if model_level else version.version, **parse_sets(set_))
    current = build_card(service, uri)
    if diff is not None:
        other = build_card(service, diff)
        changes = render.diff_cards(current, other)
        if format == "json":
            return _emit({"from": current["model_details"]["uri"], "to": other["model_details"]["uri"],
                          "changes": changes}, out_file)
        page = render.render_diff_html if format == "html" else render.render_diff
        return _emit(page(changes, current["model_details"]["uri"], other["model_details"]["uri"]), out_file)
    if format == "json":
        return _emit(current, out_file)
    _emit((render.render_html if format == "html" else render.render_markdown)(current), out_file)


def parse_sets(items: list[str]) -> dict[str, Any]:
    """``["limitations=a", "limitations=b", "overview="]`` -> ``{"limitations": ["a", "b"], "overview": None}``."""
    from keel.errors import InvalidInput

    grouped: dict[str, list[str]] = {}
    for item in items:
        field, sep, text = item.partition("=")
        if not sep or not field.strip():
            raise InvalidInput(f"--set takes FIELD=TEXT (FIELD= removes the field), got {item!r}")
        grouped.setdefault(field.strip(), []).append(text)
    fields: dict[str, Any] = {}
    for field, texts in grouped.items():
        if texts == [""]:
            fields[field] = None
        elif "" in texts:
            raise InvalidInput(f"--set {field}= removes the field; it cannot be combined with other values of it")
        else:
            fields[field] = texts[0] if len(texts) == 1 else texts
    return fields


def _emit(document: Any, out_file: Path | None) -> None:
    if out_file is None:
        if isinstance(document, str):
            out.print(document, markup=False, emoji=False, highlight=False, end="")
        else:
            print_json(document)
        return
    import json

    text = document if isinstance(document, str) else json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    out_file.write_text(text, encoding="utf-8")
    out.print(f"wrote {out_file}", markup=False)
