"""`keel models import`: bring a model from another tool in, as a logged keel model."""

from __future__ import annotations

from pathlib import Path

import typer

from keel.cli import promotions
from keel.cli.common import out, print_json, settings_from

app = typer.Typer(help="Models: the registry (versions, aliases) and imports from other tools.",
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


@app.command("list")
def list_models(ctx: typer.Context, as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List registered models with their latest version and aliases."""
    from rich.table import Table

    from keel.cli.common import client_from, fmt_time
    from keel.service.registry import list_models as listing

    models = listing(client_from(ctx).ctx)
    if as_json:
        return print_json(models)
    table = Table("model", "latest version", "aliases", "owner", "created (UTC)")
    for m in models:
        aliases = ", ".join(f"{a}->{v}" for a, v in m.aliases.items())
        table.add_row(m.name, str(m.latest_version or "-"), aliases or "-", m.owner, fmt_time(m.created_at))
    out.print(table)


@app.command("versions")
def versions(ctx: typer.Context, name: str = typer.Argument(..., help="Registered model name."),
             as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List the versions of a registered model."""
    from rich.table import Table

    from keel.cli.common import client_from, fmt_time
    from keel.service.registry import list_versions

    found = list_versions(client_from(ctx).ctx, name)
    if as_json:
        return print_json([{**v.__dict__, "uri": v.uri, "source": v.source} for v in found])
    table = Table("version", "aliases", "format", "source", "created by", "created (UTC)")
    for v in found:
        table.add_row(str(v.version), ", ".join(v.aliases) or "-", v.format, v.source, v.created_by,
                      fmt_time(v.created_at))
    out.print(table)


@app.command("show")
def show(ctx: typer.Context, uri: str = typer.Argument(..., help="models:/NAME/VERSION or models:/NAME@ALIAS."),
         as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Show one registered version: its source run, format, manifest hash and aliases."""
    from keel.cli.common import client_from
    from keel.service.registry import resolve_uri

    v = resolve_uri(client_from(ctx).ctx, uri)
    data = {**v.__dict__, "uri": v.uri, "source": v.source}
    if as_json:
        return print_json(data)
    for key in ("uri", "source", "format", "manifest_sha256", "aliases", "created_by"):
        out.print(f"{key:16} {data[key]}", markup=False)


@app.command("register")
def register(ctx: typer.Context, source: str = typer.Argument(..., help="runs:/RUN_ID/PATH of a logged model."),
             name: str = typer.Argument(..., help="Registered model name (created if needed).")) -> None:
    """Register a logged model as the next version of NAME."""
    import re

    from keel.cli.common import client_from
    from keel.errors import InvalidInput
    from keel.service.registry import register_version

    match = re.match(r"^runs:/([^/]+)/(.+)$", source)
    if not match:
        raise InvalidInput(f"source must be runs:/RUN_ID/PATH, got {source!r}")
    client = client_from(ctx)
    run_id, path = match[1], match[2].strip("/")
    manifest = client.read_artifact(run_id, f"{path}/keel.yaml")
    import yaml

    fmt = (yaml.safe_load(manifest) or {}).get("format", "unknown")
    version = register_version(client.ctx, name, run_id, path, format=fmt)
    out.print(f"registered {source} as {version.uri}", markup=False)


@app.command("alias")
def alias(ctx: typer.Context, name: str = typer.Argument(..., help="Registered model name."),
          alias_name: str = typer.Argument(..., metavar="ALIAS", help="Alias, e.g. staging or champion."),
          version: int = typer.Argument(None, help="Version to point the alias at."),
          delete: bool = typer.Option(False, "--delete", help="Remove the alias.")) -> None:
    """Point an alias at a version (or --delete it). Protected aliases need a promotion request."""
    from keel.cli.common import client_from
    from keel.errors import InvalidInput
    from keel.service.registry import delete_alias, set_alias

    client = client_from(ctx)
    if delete:
        delete_alias(client.ctx, name, alias_name)
        out.print(f"removed alias {alias_name} of {name}", markup=False)
        return
    if version is None:
        raise InvalidInput("give the VERSION the alias should point at, or --delete")
    set_alias(client.ctx, name, alias_name, version)
    out.print(f"models:/{name}@{alias_name} -> version {version}", markup=False)


# Promotion requests live in their own module; they are commands of this group.
app.command("promote")(promotions.promote)
app.command("approve")(promotions.approve)
app.command("reject")(promotions.reject)
app.command("cancel")(promotions.cancel)
app.command("requests")(promotions.requests)


@app.command("update")
def update(ctx: typer.Context, name: str = typer.Argument(..., help="Registered model name."),
           description: str = typer.Option(None, "--description", help="New description."),
           tag: list[str] = typer.Option([], "--tag", help="KEY=VALUE, repeatable."),
           delete_tag: list[str] = typer.Option([], "--delete-tag", help="Tag key to remove, repeatable.")) -> None:
    """Change a registered model's description and tags."""
    from keel.cli.common import client_from
    from keel.errors import InvalidInput
    from keel.service.registry import update_model

    pairs = {}
    for item in tag:
        key, sep, value = item.partition("=")
        if not sep:
            raise InvalidInput(f"--tag takes KEY=VALUE, got {item!r}")
        pairs[key] = value
    model = update_model(client_from(ctx).ctx, name, description=description, tags=pairs, delete_tags=delete_tag)
    out.print(f"updated {model.name}: tags {model.tags or '{}'}", markup=False)
