"""`keel db upgrade`: apply schema migrations to the metadata store."""

from __future__ import annotations

import typer

from keel.cli.common import out, settings_from

app = typer.Typer(help="The metadata store's schema.", no_args_is_help=True)


@app.command("upgrade")
def upgrade(ctx: typer.Context) -> None:
    """Apply pending migrations (also done automatically on first use)."""
    from keel.store import engine as engines

    settings = settings_from(ctx)
    engine = engines.create_engine(settings.store_uri, sqlite_busy_timeout=settings.sqlite_busy_timeout)
    try:
        before = engines.current_revision(engine)
        engines.upgrade(engine)
        after = engines.current_revision(engine)
    finally:
        engine.dispose()
    if before == after:
        out.print(f"store already at revision {after} ({engine.url.render_as_string(hide_password=True)})")
    else:
        out.print(f"store upgraded from {before or 'empty'} to revision {after} ({engine.url.render_as_string(hide_password=True)})")
