"""`keel models import`: bring a model from another tool in, as a logged keel model."""

from __future__ import annotations

from pathlib import Path

import typer

from keel.cli.common import out, print_json, settings_from

app = typer.Typer(help="Models: import from other tools (the registry arrives with versions and approvals).",
                  no_args_is_help=True)


@app.command("import")
def import_model(
    ctx: typer.Context,
    path: Path = typer.Argument(..., help="The model directory to import."),
    format: str = typer.Option(..., "--format", help="Source format: mlflow."),
    name: str = typer.Option("model", "--name", help="Artifact name of the model in its run."),
    experiment: str = typer.Option("imported", "--experiment", help="Experiment of the import run."),
    allow_unverified_pickle: bool = typer.Option(
        False, "--allow-unverified-pickle", help="Load pickle-based flavors (runs their code: trust the source)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Import a model directory (MLflow's MLmodel format) into a new run, re-saved in keel's formats."""
    from keel.errors import InvalidInput
    from keel.formats.api import log_model
    from keel.formats.mlflow_import import read_mlflow_model
    from keel.tracking.fluent import start_run

    if format != "mlflow":
        raise InvalidInput(f"unknown import format {format!r}; supported: mlflow")
    imported = read_mlflow_model(path, allow_unverified_pickle=allow_unverified_pickle)
    tags = {"keel.imported_from": str(path.resolve()), "keel.import_format": "mlflow",
            "mlflow.flavor": imported.flavor, "mlflow.version": imported.mlflow.get("mlflow_version") or "",
            "mlflow.model_uuid": imported.mlflow.get("model_uuid") or ""}
    with start_run(experiment, name=f"import-{path.name}", tags=tags, settings=settings_from(ctx)):
        info = log_model(imported.model, name, input_example=imported.input_example)
    if as_json:
        return print_json(info)
    out.print(f"imported {path} ({imported.flavor} flavor, MLflow {imported.mlflow.get('mlflow_version')}) "
              f"as {info.uri} [{info.format}]")
