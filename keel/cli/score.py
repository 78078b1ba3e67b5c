"""`keel score MODEL_URI --input IN --output OUT.parquet`: batch scoring of a file, audited."""

from __future__ import annotations

from typing import Optional

import typer

from keel.cli.common import client_from, out, print_json


def score(
    ctx: typer.Context,
    uri: str = typer.Argument(..., metavar="MODEL_URI", help="models:/NAME/VERSION, models:/NAME@ALIAS, "
                                                             "runs:/RUN/PATH or a bundle folder."),
    input: str = typer.Option(..., "--input", "-i", help="A .csv or .parquet file (path or fsspec URL)."),
    output: str = typer.Option(..., "--output", "-o", help="The .parquet file to write (path or fsspec URL)."),
    batch_size: int = typer.Option(10_000, "--batch-size", help="Rows scored at a time (bounds memory)."),
    columns: Optional[str] = typer.Option(None, "--columns",
                                          help="A,B,...: feature columns for a model that takes one tensor."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Score every row of a file: input columns + prediction (+ probability_CLASS) into Parquet."""
    from keel.deploy.batch import score_file

    picked = [c.strip() for c in columns.split(",") if c.strip()] if columns else None
    result = score_file(client_from(ctx).ctx, uri, input, output, batch_size=batch_size, columns=picked)
    if as_json:
        return print_json(result)
    out.print(f"scored {result.rows} rows in {result.batches} batches with {result.model_uri} -> {result.output} "
              f"(sha256 {result.sha256[:12]}, {result.seconds:.1f}s)", markup=False)
