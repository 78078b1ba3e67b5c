"""`keel fairness URI DATA --sensitive COL`: fairness of a registered version on evaluation data, kept with it."""

from __future__ import annotations

from pathlib import Path
from typing import Optional

import typer

from keel.cli.common import client_from, err, out, print_json

EXIT_FAILED = 3


def fairness(
    ctx: typer.Context,
    uri: str = typer.Argument(..., help="Registered version: models:/NAME/VERSION or models:/NAME@ALIAS."),
    data: Path = typer.Argument(..., help="Evaluation data: a .csv, .csv.gz, .parquet or .pq file."),
    sensitive: str = typer.Option(..., "--sensitive", help="Column whose groups are compared."),
    target: Optional[str] = typer.Option(None, "--target", help="Label column: adds TPR/FPR and equalized odds."),
    limits: list[str] = typer.Option([], "--limit", metavar="NAME=VALUE",
                                     help="max_parity_difference (0.1), min_parity_ratio (0.8), "
                                          "max_equalized_odds_difference (0.1); repeatable."),
    min_group_size: int = typer.Option(100, "--min-group-size", min=1, help="Smaller groups are not judged."),
    no_store: bool = typer.Option(False, "--no-store", help="Compute and print only; attach nothing."),
    as_json: bool = typer.Option(False, "--json", help="Print the evaluation document as JSON."),
) -> None:
    """Measure fairness across the groups of a column; exit 3 when a limit fails.

    The document is attached to the version as fairness/<UTC time>.json (its
    model card shows it, and a promotion policy's fairness limits judge it)
    unless --no-store is given.
    """
    from keel.cli.monitor import _pairs
    from keel.service.fairness_eval import evaluate_version

    client = client_from(ctx)
    try:
        doc = evaluate_version(client.ctx, uri, str(data), sensitive=sensitive, target=target,
                               limits=_pairs(limits, "--limit", float) or None, min_group_size=min_group_size,
                               store=not no_store)
    finally:
        client.close()
    result = doc["result"]
    if as_json:
        print_json(doc)
    else:
        from rich.table import Table

        table = Table("group", "rows", "selection rate", "accuracy", "TPR", "FPR", title_justify="left",
                      title=f"{doc['model']} across {sensitive} ({doc['data']['rows']} rows)")
        for g in result["groups"]:
            table.add_row(str(g["group"]), str(g["count"]), *(_fmt(g.get(k)) for k in (
                "selection_rate", "accuracy", "true_positive_rate", "false_positive_rate")))
        out.print(table)
        for check in result["checks"]:
            line = f"{check['name']}: {_fmt(check['value'])} (limit {check['limit']:g}) {check['status']}"
            (err if check["status"] == "fail" else out).print(line, markup=False)
        out.print("not stored (--no-store)" if no_store else f"stored with {doc['model']}", markup=False)
    if result["status"] == "fail":
        raise typer.Exit(EXIT_FAILED)


def _fmt(value: Optional[float]) -> str:
    return "-" if value is None else f"{value:.4g}"
