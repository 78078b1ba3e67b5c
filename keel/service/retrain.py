"""`keel retrain`: replay the pipeline that produced a model on new data, gate the challenger,
and file a promotion request for a blessed one.

1. The base version is the one behind ``alias`` (the champion), else the latest.
2. Its pipeline run is replayed with the new data in place of the old
   (keel/pipelines/replay.py); a step of it registers the challenger.
3. Champion and challenger are scored on the same evaluation data: ``eval_data``,
   or a seeded holdout split off the new data (the pipeline then trains on the rest).
4. The gate (keel/pipelines/gate.py) decides; the decision, with every number,
   is recorded on the challenger and in the audit log (keel/service/gate.py).
5. A blessed challenger gets a promotion request for ``alias``: approved at once
   only where policy allows it for that alias, else it waits for an approver.
"""

from __future__ import annotations

import dataclasses

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from keel.errors import InvalidInput, NotFound
from keel.pipelines.gate import Decision, GateSpec, decide, default_spec
from keel.settings import Settings


@dataclass
class RetrainResult:
    model: str
    pipeline_run_id: str
    replay_of: str
    base_version: int
    challenger: int
    champion: int | None
    blessed: bool
    reasons: list[str]
    checks: list[dict[str, Any]]
    scores: dict[str, dict[str, float]] = field(default_factory=dict)
    promotion_request_id: str | None = None
    promotion_status: str | None = None
    decision_id: str | None = None
    environment: str | None = None  # the interpreter of the built environment the challenger was trained in


def retrain(name: str, data: str | dict[str, str], *, target: str | None = None, eval_data: str | None = None,
            holdout: float = 0.2, seed: int = 0, alias: str = "production", spec: GateSpec | None = None,
            executor: str = "inprocess", strict: bool = False, cache: bool = True, env: str = "current",
            executor_options: dict[str, Any] | None = None, settings: Settings | None = None) -> RetrainResult:
    """Retrain model ``name`` on ``data`` and gate the challenger (see the module docstring).

    ``env="build"`` trains the challenger in a virtual environment built from the
    recorded lock (keel.pipelines.replay.replay); the gate runs here.
    """
    from keel.pipelines.replay import replay
    from keel.service import registry
    from keel.service.pipelines import pipeline_run_of_version
    from keel.tracking.fluent import client_for

    client = client_for(settings)
    ctx = client.ctx
    settings = client.settings
    try:
        champion: int | None = registry.get_version(ctx, name, alias=alias).version
    except NotFound:
        champion = None
    versions = registry.list_versions(ctx, name)
    base = champion if champion is not None else versions[-1].version
    recorded = pipeline_run_of_version(ctx, name, base)
    target = target or _recorded_target(ctx, recorded)

    folder = settings.home / "cache" / "retrain" / uuid.uuid4().hex
    if eval_data is None:
        if not isinstance(data, str):
            raise InvalidInput("with several datasets, pass --eval DATA for the gate's evaluation data")
        from keel.pipelines.evaluate import split_holdout

        train_file, eval_file = split_holdout(_local(data), folder, fraction=holdout, seed=seed)
        data_for_pipeline: str | dict[str, str] = str(train_file)
    else:
        data_for_pipeline, eval_file = data, Path(eval_data)

    run = replay(recorded.run_id, data=data_for_pipeline, executor=executor, cache=cache, strict=strict, env=env,
                 executor_options=executor_options, settings=settings)
    challenger = _new_version(ctx, name, run)
    result = gate(name, challenger, champion=champion, eval_data=eval_file, target=target, alias=alias, spec=spec,
                  settings=settings, pipeline_run_id=run.run_id, replay_of=recorded.run_id, base_version=base)
    result.environment = run.environment
    return result


def gate(name: str, challenger: int, *, champion: int | None, eval_data: str | Path, target: str,
         alias: str = "production", spec: GateSpec | None = None, settings: Settings | None = None,
         pipeline_run_id: str = "", replay_of: str = "", base_version: int | None = None) -> RetrainResult:
    """Score ``challenger`` (and ``champion``) on ``eval_data``, decide, record, request promotion if blessed."""
    from keel.formats.api import load_model
    from keel.pipelines.evaluate import read_table, score
    from keel.service.gate import record_decision
    from keel.tracking.fluent import client_for

    client = client_for(settings)
    ctx = client.ctx
    frame = read_table(eval_data)
    # The sensitive column is measured across, not fed to the models (unless their signature takes it).
    ignore = (spec.sensitive,) if spec is not None and spec.sensitive else ()
    scores: dict[str, dict[str, float]] = {}
    task = "classification"
    try:
        model = load_model(f"models:/{name}/{challenger}", settings=client.settings)
        task, scores["challenger"] = score(model, frame, target, ignore)
        load_check = (True, f"loaded models:/{name}/{challenger} and predicted {len(frame)} rows")
    except InvalidInput:
        raise  # bad evaluation data: not the challenger's fault
    except Exception as exc:  # noqa: BLE001 - whatever breaks loading or predicting fails the check
        load_check = (False, f"models:/{name}/{challenger} failed to load or predict: {type(exc).__name__}: {exc}")
    champion_problem = None
    if champion is not None:
        try:
            champion_model = load_model(f"models:/{name}/{champion}", settings=client.settings)
            _, scores["champion"] = score(champion_model, frame, target, ignore)
        except Exception as exc:  # noqa: BLE001 - a champion that cannot be scored cannot be beaten: not blessed
            champion_problem = f"champion models:/{name}/{champion} could not be scored on the evaluation data: " \
                               f"{type(exc).__name__}: {exc}"
    if spec is None or not (spec.floors or spec.ceilings or spec.tolerances):  # e.g. only fairness was asked
        spec = dataclasses.replace(spec or GateSpec(), tolerances=default_spec(task).tolerances)
    fair = None
    if spec.sensitive is not None and load_check[0]:
        from keel.pipelines.evaluate import fairness

        fair = fairness(model, frame, target, spec.sensitive, dict(spec.fairness))
    decision = decide(spec, scores.get("challenger", {}), scores.get("champion"), load_check, fair)
    if champion_problem is not None:
        decision = Decision(False, [*decision.checks, {"name": "champion_scored", "passed": False,
                                                       "detail": champion_problem}],
                            [*decision.reasons, champion_problem])

    # The decision is recorded before anything acts on it: a promotion request that fails still
    # leaves the challenger's decision, with its numbers, on the version and in the audit log.
    details = {"alias": alias, "target": target, "task": task, "scores": scores, "spec": spec.to_dict(),
               "evaluation_data": _data_summary(eval_data, frame), "fairness": fair, "pipeline_run_id": pipeline_run_id,
               "replay_of": replay_of}
    recorded = record_decision(ctx, name, challenger, champion_version=champion, blessed=decision.blessed,
                               reasons=decision.reasons, checks=decision.checks, promotion_request_id=None,
                               details=details)
    request_id = status = None
    if decision.blessed:
        from keel.service.gate import link_promotion
        from keel.service.promotions import request_promotion

        comment = f"blessed by the retrain gate against champion version {champion}" if champion else \
            "blessed by the retrain gate (no champion yet)"
        request = request_promotion(ctx, name, challenger, alias, comment=comment)
        request_id, status = request.id, request.status
        recorded = link_promotion(ctx, recorded, request_id)
    return RetrainResult(name, pipeline_run_id, replay_of, base_version or challenger, challenger, champion,
                         decision.blessed, decision.reasons, decision.checks, scores, request_id, status,
                         recorded.id)


def _new_version(ctx: Any, name: str, run: Any) -> int:
    """The version of ``name`` that the replayed pipeline run (or one of its steps) registered."""
    from keel.store.schema import model_versions

    run_ids = [run.run_id] + [s.run_id for s in run.steps.values() if s.run_id]
    with ctx.store.read() as conn:
        found = conn.execute(sa.select(sa.func.max(model_versions.c.version)).where(
            model_versions.c.name == name, model_versions.c.run_id.in_(run_ids))).scalar()
    if found is None:
        reused = [n for n, s in run.steps.items() if s.status == "cached"]
        why = (f" (steps {', '.join(reused)} were reused from the cache: the data they saw did not change)"
               if reused else "")
        raise NotFound(f"the replayed pipeline (run {run.run_id}) registered no new version of {name!r}{why}; "
                       f"its model step must call keel.log_model(..., register={name!r})")
    return int(found)


def _recorded_target(ctx: Any, recorded: Any) -> str:
    target = recorded.params.get("target")
    if isinstance(target, str) and target:
        return target
    raise InvalidInput(f"which column is the label? pipeline {recorded.pipeline!r} has no 'target' parameter; "
                       "pass --target COLUMN")


def _local(uri: str) -> Path:
    if "://" in uri and not uri.startswith("file://"):
        raise InvalidInput(f"to split a holdout off {uri}, it must be a local file; or pass --eval DATA")
    return Path(uri.removeprefix("file://"))


def _data_summary(path: str | Path, frame: Any) -> dict[str, Any]:
    import hashlib

    return {"path": str(path), "rows": int(len(frame)),
            "sha256": hashlib.sha256(Path(path).read_bytes()).hexdigest()}

