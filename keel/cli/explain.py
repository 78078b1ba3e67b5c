"""`keel explain URI DATA`: global feature importance of a registered version, kept with it."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from keel.cli.common import client_from, out, print_json

_MEANING = {
    "probability_change": "mean change of class probabilities",
    "prediction_change": "mean absolute change of the prediction",
    "label_change_rate": "share of rows whose predicted label changes",
}


def explain(
    ctx: typer.Context,
    uri: str = typer.Argument(..., help="Registered version: models:/NAME/VERSION or models:/NAME@ALIAS."),
    data: Path = typer.Argument(..., help="Data to explain on: a .csv, .csv.gz, .parquet or .pq file."),
    target: Optional[str] = typer.Option(None, "--target", help="Label column (importance = drop in score)."),
    repeats: int = typer.Option(5, "--repeats", min=1, help="Shuffles per feature."),
    max_rows: int = typer.Option(2000, "--max-rows", min=1, help="Rows used at most (a seeded sample)."),
    scoring: Optional[str] = typer.Option(None, "--scoring",
                                          help="Score with --target: accuracy, balanced_accuracy, r2, "
                                               "neg_mean_squared_error, neg_mean_absolute_error."),
    seed: int = typer.Option(0, "--seed", help="Seed for the row sample and the shuffles."),
    top: int = typer.Option(15, "--top", min=1, help="Features shown per method."),
    no_store: bool = typer.Option(False, "--no-store", help="Compute and print only; attach nothing."),
    as_json: bool = typer.Option(False, "--json", help="Print the explanation document as JSON."),
) -> None:
    """Explain a registered model: permutation importance, and tree SHAP for tree models.

    The result is attached to the version as explanations/<UTC time>.json
    (shown in its model card) unless --no-store is given.
    """
    from keel.service.explanations import explain_version, explanation_path

    client = client_from(ctx)
    try:
        doc = explain_version(client.ctx, uri, str(data), target=target, n_repeats=repeats, max_rows=max_rows,
                              seed=seed, scoring=scoring, store=not no_store)
    finally:
        client.close()
    if as_json:
        return print_json(doc)
    _print(doc, top)
    if no_store:
        out.print("not stored (--no-store)")
    else:
        out.print(f"stored with {doc['model']} as {explanation_path(doc['created_at'])}", markup=False)


def _print(doc: dict[str, Any], top: int) -> None:
    from rich.markup import escape
    from rich.table import Table

    used = doc["data"]
    out.print(f"[bold]{escape(doc['model'])}[/bold] on {escape(used['source'])}: "
              f"{used['rows']} of {used['total_rows']} rows")
    for method in doc["methods"]:
        rows = [g for g in doc["global"] if g["method"] == method]
        table = Table("#", "feature", "importance", "std", title=escape(_title(doc, method)), title_justify="left")
        for rank, item in enumerate(rows[:top], 1):
            std = "-" if item["std"] is None else f"{item['std']:.4g}"
            importance = "-" if item["importance"] is None else f"{item['importance']:.4g}"
            table.add_row(str(rank), escape(item["feature"]), importance, std)
        out.print(table)
        if len(rows) > top:
            out.print(f"  ... {len(rows) - top} more (--top)")


def _title(doc: dict[str, Any], method: str) -> str:
    if method == "tree_shap":
        return f"tree SHAP: mean |SHAP value| ({doc['params']['shap_output']})"
    score = doc["score"]
    if score is not None:
        baseline = "-" if score["baseline"] is None else f"{score['baseline']:.4g}"
        return f"permutation: drop in {score['name']} (baseline {baseline}, target {doc['target']})"
    measure = doc["params"]["measure"]
    return f"permutation: {_MEANING.get(measure, measure)} (no target)"
