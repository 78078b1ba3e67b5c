"""Entry point of the `keel` command: global options, error handling, groups."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer

from keel import __version__
from keel.cli import audit, card, db, env, explain, lineage, models, monitor, runs, score, serve, users
from keel.cli import deploy as deploy_cli
from keel.cli import fairness as fairness_cli
from keel.cli import pipeline as pipeline_cli
from keel.cli import retrain as retrain_cli
from keel.cli import triggers as triggers_cli
from keel.cli.common import err

app = typer.Typer(
    name="keel",
    help="keel: track, version, govern, serve, monitor and retrain models as one audited loop.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode=None,
)
app.add_typer(runs.experiments_app, name="experiments")
app.add_typer(runs.runs_app, name="runs")
app.add_typer(audit.app, name="audit")
app.add_typer(db.app, name="db")
app.add_typer(env.app, name="env")
app.add_typer(models.app, name="models")
app.add_typer(pipeline_cli.app, name="pipeline")
app.add_typer(monitor.app, name="monitor")
app.add_typer(users.users_app, name="users")
app.add_typer(users.tokens_app, name="tokens")
app.command("lineage")(lineage.lineage)
app.command("card")(card.card)
app.command("explain")(explain.explain)
app.command("fairness")(fairness_cli.fairness)
app.command("serve")(serve.serve)
app.command("score")(score.score)
app.command("retrain")(retrain_cli.retrain)
app.add_typer(triggers_cli.app, name="triggers")
app.command("scheduler")(triggers_cli.scheduler)
app.command("deploy")(deploy_cli.deploy)
app.add_typer(deploy_cli.deployments_app, name="deployments")


def _version(value: bool) -> None:
    if value:
        typer.echo(f"keel {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    ctx: typer.Context,
    home: Optional[Path] = typer.Option(None, "--home", help="Local state folder (KEEL_HOME)."),
    store_uri: Optional[str] = typer.Option(None, "--store-uri", help="Metadata store URL (KEEL_STORE_URI)."),
    artifact_uri: Optional[str] = typer.Option(None, "--artifact-uri", help="Artifact store URL (KEEL_ARTIFACT_URI)."),
    user: Optional[str] = typer.Option(None, "--user", help="Actor name recorded in the audit trail (KEEL_USER)."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks on errors."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Print the version."),
) -> None:
    """Global options apply to every command; flags beat KEEL_* variables, which beat keel.toml."""
    ctx.obj = {"overrides": {"home": home, "store_uri": store_uri, "artifact_uri": artifact_uri, "user": user},
               "debug": debug}


@app.command()
def quickstart(
    home: Optional[Path] = typer.Option(
        None, "--home", help="Where to put the quickstart store (default: a new temporary folder)."),
) -> None:
    """Run the whole loop on a bundled dataset: train, govern, serve, monitor, retrain on drift, gate, approve."""
    from keel.quickstart import run_quickstart

    run_quickstart(home)


def run(argv: list[str] | None = None) -> None:
    """Console-script entry: one clear line on stderr and exit 1 on errors (traceback with --debug).

    Usage errors are reported by typer itself (exit 2); keel's own errors and
    anything unexpected are caught here.
    """
    from keel.errors import KeelError

    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args
    try:
        app(args=args, prog_name="keel")
    except KeelError as exc:
        if debug:
            raise
        err.print(f"error: {exc}", markup=False)
        sys.exit(1)
    except Exception as exc:  # an unexpected failure still gets one line, and a pointer to --debug
        if debug:
            raise
        err.print(f"error: {type(exc).__name__}: {exc} (rerun with --debug for the traceback)", markup=False)
        sys.exit(1)


if __name__ == "__main__":
    run()
