"""`keel pipeline run/runs/show`: run a pipeline file, list and inspect pipeline runs."""

from __future__ import annotations

from pathlib import Path

import typer

from keel.cli.common import out, print_json, settings_from

app = typer.Typer(help="Pipelines: run @keel.pipeline files, with a step cache and a replay record.",
                  no_args_is_help=True)


@app.command("run")
def run(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="A Python file defining a @keel.pipeline function."),
    param: list[str] = typer.Option([], "--param", "-p", help="NAME=VALUE, repeatable (typed like the default)."),
    pipeline: str = typer.Option(None, "--pipeline", help="Which pipeline, when the file defines several."),
    executor: str = typer.Option("inprocess", "--executor", help="inprocess, subprocess, ray, kubernetes."),
    ray_address: str = typer.Option(None, "--ray-address", help="With --executor ray: the cluster (ray://head:10001 "
                                                                "or host:port; env KEEL_RAY_ADDRESS); default: "
                                                                "what ray.init() finds, else a local instance."),
    stage: str = typer.Option(None, "--stage", help="With --executor kubernetes: [profiles.STAGE] for the Jobs."),
    image: str = typer.Option(None, "--image", help="With --executor kubernetes: the steps' image."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Rerun every step (the cache is still filled)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Run a pipeline; steps whose cache key matches an earlier run reuse its outputs."""
    from keel.pipelines.loader import find_pipeline, load_file
    from keel.pipelines.runner import parse_params, run_pipeline

    pipe = find_pipeline(load_file(file), pipeline)
    options = executor_options(executor, ray_address)
    if executor == "kubernetes":
        options.update(stage=stage, image=image)
    result = run_pipeline(pipe, parse_params(pipe, param), executor=executor, cache=not no_cache,
                          settings=settings_from(ctx), executor_options=options)
    if as_json:
        return print_json(_summary(result))
    out.print(f"pipeline {result.pipeline}: run {result.run_id} {result.status}", markup=False)
    for name, step in result.steps.items():
        extra = f" (from run {step.cached_from})" if step.cached_from else ""
        out.print(f"  {name:24} {step.status}{extra}", markup=False)


def executor_options(executor: str, ray_address: str | None) -> dict:
    """Options of the chosen executor from CLI flags (``--ray-address`` only means something to Ray)."""
    if ray_address and executor != "ray":
        from keel.errors import InvalidInput

        raise InvalidInput(f"--ray-address needs --executor ray (got --executor {executor})")
    return {"address": ray_address} if ray_address else {}


def _summary(result) -> dict:
    return {"run_id": result.run_id, "pipeline": result.pipeline, "status": result.status,
            "steps": {n: {"status": s.status, "run_id": s.run_id, "cache_key": s.cache_key,
                          "outputs": s.outputs, "cached_from": s.cached_from} for n, s in result.steps.items()}}


@app.command("runs")
def runs(ctx: typer.Context, pipeline: str = typer.Option(None, "--pipeline", help="Only this pipeline's runs."),
         limit: int = typer.Option(50, "--limit", help="At most this many, newest first."),
         as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List pipeline runs, newest first."""
    from rich.table import Table

    from keel.cli.common import client_from, fmt_time
    from keel.service.pipelines import list_pipeline_runs

    found = list_pipeline_runs(client_from(ctx).ctx, pipeline, limit)
    if as_json:
        return print_json(found)
    table = Table("run", "pipeline", "status", "executor", "replay of", "started (UTC)")
    for r in found:
        table.add_row(r.run_id, r.pipeline, r.status, r.executor, r.replay_of or "-", fmt_time(r.created_at))
    out.print(table)


@app.command("show")
def show(ctx: typer.Context, run_id: str = typer.Argument(..., help="Pipeline run id (or a unique prefix)."),
         as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """Show a pipeline run: parameters, datasets, environment lock hash and each step's outcome."""
    from keel.cli.common import client_from
    from keel.service.pipelines import get_pipeline_run, steps_of

    client = client_from(ctx)
    record = get_pipeline_run(client.ctx, run_id)
    steps = steps_of(client.ctx, record.run_id)
    if as_json:
        return print_json({**record.__dict__, "steps": steps})
    for key in ("run_id", "pipeline", "file", "status", "executor", "params", "lock_sha256", "replay_of", "error"):
        out.print(f"{key:12} {getattr(record, key)}", markup=False)
    for name, d in record.datasets.items():
        out.print(f"dataset      {name} = {d['uri']} (sha256 {d['sha256'][:12]})", markup=False)
    for s in steps:
        out.print(f"  {s.step:24} {s.status:7} run {s.run_id}" + (f"  {s.error}" if s.error else ""), markup=False)


@app.command("jobs")
def jobs(
    ctx: typer.Context,
    file: Path = typer.Argument(..., help="A Python file defining a @keel.pipeline function."),
    out_dir: Path = typer.Option(..., "--out", "-o", help="New (or empty) folder for the manifests."),
    stage: str = typer.Option(None, "--stage", "-s", help="Resource profile: [profiles.STAGE] in keel.toml."),
    image: str = typer.Option(None, "--image", help="Image with keel and the pipeline's libraries."),
    param: list[str] = typer.Option([], "--param", "-p", help="NAME=VALUE, repeatable (typed like the default)."),
    pipeline: str = typer.Option(None, "--pipeline", help="Which pipeline, when the file defines several."),
    name: str = typer.Option(None, "--name", help="Prefix of the Job names (default: the pipeline's name)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Write Kubernetes Jobs for a pipeline, one per step, to apply with kubectl (runs nothing here)."""
    from keel.pipelines.executors.kubernetes import write_jobs
    from keel.pipelines.loader import find_pipeline, load_file
    from keel.pipelines.runner import parse_params

    pipe = find_pipeline(load_file(file), pipeline)
    written = write_jobs(pipe, parse_params(pipe, param), settings_from(ctx), out=out_dir, stage=stage, image=image,
                         name=name)
    if as_json:
        return print_json(written)
    out.print(f"pipeline {pipe.name}: {len(written['jobs'])} Jobs (stage {written['stage']}) in {written['out']}",
              markup=False)
    for note in written["notes"]:
        out.print(f"next: {note}", markup=False)
