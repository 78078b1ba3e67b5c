"""`keel serve`: the inference server (Open Inference Protocol v2 + /predict)."""

from __future__ import annotations

from typing import Optional

import typer

from keel.cli.common import settings_from


def serve(
    ctx: typer.Context,
    targets: list[str] = typer.Argument(..., metavar="MODEL_URI...",
                                        help="models:/NAME@ALIAS, models:/NAME/N, runs:/RUN/PATH or a bundle "
                                             "folder; NAME=URI to choose the served name."),
    host: Optional[str] = typer.Option(None, "--host", help="Address to bind (default 127.0.0.1)."),
    port: Optional[int] = typer.Option(None, "--port", help="Port (default 8080)."),
    workers: Optional[int] = typer.Option(None, "--workers", help="Server processes (default 1)."),
    max_batch_size: Optional[int] = typer.Option(None, "--max-batch-size", help="Rows per batch at most (64)."),
    max_wait_ms: Optional[float] = typer.Option(None, "--max-wait-ms",
                                                help="Wait this long for more rows under concurrent load (0)."),
    max_queue: Optional[int] = typer.Option(None, "--max-queue",
                                            help="Requests waiting per model before 503 + Retry-After (256)."),
    max_body_mb: Optional[float] = typer.Option(None, "--max-body-mb", help="Largest request body (16 MiB)."),
    log_predictions: Optional[bool] = typer.Option(None, "--log-predictions/--no-log-predictions",
                                                   help="Log every answered request for monitoring (on)."),
    native: Optional[bool] = typer.Option(None, "--native", help="Use the model's own library, not its ONNX copy."),
    access_log: Optional[bool] = typer.Option(None, "--access-log/--no-access-log",
                                              help="JSON access log lines on stderr (on)."),
    auth: Optional[bool] = typer.Option(None, "--auth/--no-auth",
                                        help="Require an API token (viewer; editor for labels) on every route "
                                             "but health (off)."),
) -> None:
    """Serve models over HTTP: Open Inference Protocol v2 (KServe, Triton clients), /predict, /metrics.

    Flags override keel.toml's [serve] table. SIGTERM drains requests in
    flight and flushes the prediction log before exiting.
    """
    from keel.serving.server import ServeOptions, serve as run_server

    settings = settings_from(ctx)
    flags = dict(host=host, port=port, workers=workers, max_batch_size=max_batch_size, max_wait_ms=max_wait_ms,
                 max_queue=max_queue, max_body_mb=max_body_mb, log_predictions=log_predictions, native=native,
                 access_log=access_log, auth=auth)
    options = ServeOptions.resolve(targets, flags, dict(settings.serve))
    run_server(options, settings)
