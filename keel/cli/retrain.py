"""`keel retrain NAME --data URI`: replay the model's pipeline on new data and gate the challenger."""

from __future__ import annotations

from typing import Any, Optional

import typer

from keel.cli.common import out, print_json, settings_from

NOT_BLESSED_EXIT = 3  # a decision, not an error: scripts can tell "stopped by the gate" from "broke"


def retrain(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Registered model name."),
    data: list[str] = typer.Option(..., "--data", help="New data: a file or fsspec URL (NAME=URI with several "
                                                       "dataset parameters)."),
    eval_data: Optional[str] = typer.Option(None, "--eval", help="Evaluation data for champion and challenger "
                                                                 "(default: a holdout of the new data)."),
    target: Optional[str] = typer.Option(None, "--target", help="Label column (default: the pipeline's "
                                                                "'target' parameter)."),
    holdout: float = typer.Option(0.2, "--holdout", help="Share of the new data held out for evaluation."),
    seed: int = typer.Option(0, "--seed", help="Seed of the holdout split."),
    alias: str = typer.Option("production", "--alias", help="The champion's alias, and the one requested."),
    floor: list[str] = typer.Option([], "--floor", help="METRIC=VALUE minimum for the challenger, repeatable."),
    ceiling: list[str] = typer.Option([], "--ceiling", help="METRIC=VALUE maximum (rmse, mae, ...), repeatable."),
    tolerance: list[str] = typer.Option([], "--tolerance", help="METRIC=VALUE: how much worse than the champion "
                                                                "is allowed, repeatable."),
    sensitive: Optional[str] = typer.Option(None, "--sensitive", help="Column of the evaluation data to measure "
                                                                      "the challenger's fairness across."),
    fairness: list[str] = typer.Option([], "--fairness", help="LIMIT=VALUE: max_parity_difference, "
                                                              "min_parity_ratio, max_equalized_odds_difference."),
    executor: str = typer.Option("inprocess", "--executor", help="inprocess, subprocess, ray."),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="With --executor ray: the cluster "
                                                                          "(env KEEL_RAY_ADDRESS)."),
    strict: bool = typer.Option(False, "--strict", help="Refuse when the environment differs from the recorded "
                                                        "lock (default: warn)."),
    env: str = typer.Option("current", "--env", help="current: replay in this environment; build: build a venv "
                                                     "from the recorded lock (once, then reused) and replay there."),
    no_cache: bool = typer.Option(False, "--no-cache", help="Rerun every step."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Replay the pipeline that produced NAME with new data; the gate decides whether to request promotion.

    Exit 0: the challenger was blessed (a promotion request was filed); 3: the gate
    stopped it (the reasons are printed); 1: an error. Thresholds may also come from
    keel.toml: [gate] floors = {accuracy = 0.8}, tolerances = {accuracy = 0.01}.
    """
    from keel.cli.pipeline import executor_options
    from keel.pipelines.gate import GateSpec
    from keel.pipelines.replay import ENVS
    from keel.service.retrain import retrain as run_retrain
    from keel.settings import load_toml

    if env not in ENVS:
        from keel.errors import InvalidInput

        raise InvalidInput(f"--env must be one of {', '.join(ENVS)}, got {env!r}")
    options = executor_options(executor, ray_address)
    config = load_toml().get("gate", {})
    spec = None
    if floor or ceiling or tolerance or config or sensitive or fairness:
        spec = GateSpec(floors={**_numbers(config.get("floors", {}), "[gate] floors"), **_pairs(floor, "--floor")},
                        ceilings={**_numbers(config.get("ceilings", {}), "[gate] ceilings"),
                                  **_pairs(ceiling, "--ceiling")},
                        tolerances={**_numbers(config.get("tolerances", {}), "[gate] tolerances"),
                                    **_pairs(tolerance, "--tolerance")},
                        sensitive=sensitive or config.get("sensitive"),
                        fairness={**_numbers(config.get("fairness", {}), "[gate] fairness"),
                                  **_pairs(fairness, "--fairness")})
    named = [d for d in data if "=" in d and "://" not in d.split("=", 1)[0]]
    given: Any = dict(d.split("=", 1) for d in named) if named else data[0]
    if len(data) > 1 and len(named) != len(data):
        from keel.errors import InvalidInput

        raise InvalidInput("with several --data options, give each as NAME=URI")
    result = run_retrain(name, given, target=target, eval_data=eval_data, holdout=holdout, seed=seed, alias=alias,
                         spec=spec, executor=executor, strict=strict, cache=not no_cache, env=env,
                         executor_options=options, settings=settings_from(ctx))
    if as_json:
        print_json(result)
    else:
        out.print(f"retrained {name}: pipeline run {result.pipeline_run_id} (replay of {result.replay_of}) "
                  f"-> challenger models:/{name}/{result.challenger}", markup=False)
        if result.environment:
            out.print(f"  trained in the recorded environment, built from its lock: {result.environment}",
                      markup=False)
        for who, numbers in result.scores.items():
            shown = ", ".join(f"{k}={v:.6g}" for k, v in numbers.items())
            out.print(f"  {who:10} {shown}", markup=False)
        for check in result.checks:
            out.print(f"  [{'pass' if check['passed'] else 'FAIL'}] {check['detail']}", markup=False)
        if result.blessed:
            out.print(f"blessed: promotion request {result.promotion_request_id} to {alias!r} is "
                      f"{result.promotion_status}", markup=False)
        else:
            out.print(f"not promoted: {'; '.join(result.reasons)}", markup=False)
    if not result.blessed:
        raise typer.Exit(NOT_BLESSED_EXIT)


def _pairs(items: list[str], option: str) -> dict[str, float]:
    from keel.errors import InvalidInput

    found: dict[str, float] = {}
    for item in items:
        key, sep, text = item.partition("=")
        try:
            found[key] = float(text)
        except ValueError:
            sep = ""
        if not sep or not key:
            raise InvalidInput(f"{option} takes METRIC=NUMBER, got {item!r}")
    return found


def _numbers(table: Any, where: str) -> dict[str, float]:
    from keel.errors import ConfigError

    if not isinstance(table, dict) or not all(isinstance(v, (int, float)) and not isinstance(v, bool)
                                              for v in table.values()):
        raise ConfigError(f"keel.toml: {where} must map metric names to numbers, got {table!r}")
    return {k: float(v) for k, v in table.items()}
