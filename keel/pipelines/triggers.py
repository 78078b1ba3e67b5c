"""What makes a trigger fire, and the scheduler loop that fires them.

- ``new_data``: a folder or fsspec glob; each file is keyed by its path and
  content hash, so a new file, or a file whose content changed, fires once.
- ``schedule``: cron syntax (croniter); after downtime only the latest missed
  tick fires, not every one.
- ``dataset``: each new digest logged under a dataset name
  (``keel.log_dataset(df, name=..., save=True)``) after the trigger was
  created fires once; the action gets the stored rows as a Parquet file.
- ``monitor_alert``: each window of a monitor (keel/service/monitors.py)
  that alerted after the trigger was created fires once, keyed by the
  window result's id: drift or harm in served traffic starts a retrain.
- ``manual``: ``keel triggers fire NAME``.

The action is a retrain (keel/service/retrain.py) or a pipeline run, with
the new file as the data. Claiming a firing is a store write that happens
before the action (keel/service/triggers.py), so a restart never repeats one.
"""

from __future__ import annotations

import hashlib
import logging
import time
import traceback
import uuid
from datetime import datetime, timezone
from typing import Any, Callable

from keel.errors import InvalidInput
from keel.service import triggers as service
from keel.settings import Settings

log = logging.getLogger("keel.triggers")
_ALERTS_LOOKED_AT = 100  # newest window results a pass looks at per monitor-alert trigger


def check_cron(expr: Any) -> str:
    try:
        from croniter import croniter
    except ImportError:
        raise InvalidInput("schedule triggers need croniter: pip install 'keel[triggers]'") from None
    if not isinstance(expr, str) or not croniter.is_valid(expr):
        raise InvalidInput(f"--cron must be a cron expression such as '0 3 * * *' (03:00 daily), got {expr!r}")
    return expr


def list_files(pattern: str) -> list[str]:
    """Files matching a folder (every file in it) or glob, local or any fsspec URL, sorted."""
    import fsspec

    fs, root = fsspec.core.url_to_fs(pattern)
    if not any(ch in root for ch in "*?[") and fs.isdir(root):
        root = root.rstrip("/") + "/*"
    found = [p for p in fs.glob(root) if fs.isfile(p)]
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    prefix = "" if protocol in ("file", "local") else f"{protocol}://"
    return sorted(prefix + p for p in found)


def file_key(path: str) -> str:
    """``sha256:path``: the same path with new content is new data.

    A long-running scheduler hashes a file again only when its size or
    modification time (or ETag) changed since it last did: a folder of large
    training files is not re-read every pass.
    """
    import fsspec

    fs, local = fsspec.core.url_to_fs(path)
    info = fs.info(local)
    stamp = (info.get("size"), info.get("mtime") or info.get("LastModified") or info.get("ETag") or info.get("etag"))
    known = _hashed.get(path)
    if known is not None and known[0] == stamp and stamp[1] is not None:
        return known[1]
    digest = hashlib.sha256()
    with fsspec.open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    key = f"{digest.hexdigest()}:{path}"[:1024]
    _hashed[path] = (stamp, key)
    return key


_hashed: dict[str, tuple[tuple[Any, Any], str]] = {}  # path -> (size and time it had, its key), per process


def due(trigger: service.Trigger, claimed: set[str], now: datetime,
        ctx: Any = None) -> list[tuple[str, dict[str, Any]]]:
    """(dedupe key, details) of every firing this trigger owes now (``ctx``: the store, for monitor alerts)."""
    if trigger.kind == "dataset":
        import sqlalchemy as sa

        from keel.store.schema import datasets

        with ctx.store.read() as conn:
            rows = conn.execute(sa.select(datasets.c.digest, datasets.c.data_sha256).where(
                datasets.c.name == trigger.spec["dataset"], datasets.c.created_at >= trigger.created_at)
                .order_by(datasets.c.created_at, datasets.c.digest)).all()
        return [(f"dataset:{r.digest}", {"dataset": f"datasets:/{trigger.spec['dataset']}/{r.digest}",
                                         "data_sha256": r.data_sha256})
                for r in rows if f"dataset:{r.digest}" not in claimed]
    if trigger.kind == "monitor_alert":
        from keel.service.monitors import list_results

        alerted = [r for r in reversed(list_results(ctx, trigger.spec["monitor"], limit=_ALERTS_LOOKED_AT))
                   if r.status == "alert" and r.created_at >= trigger.created_at]
        return [(f"monitor-result:{r.id}", {"monitor": r.monitor, "result_id": r.id, "alerts": r.alerts})
                for r in alerted if f"monitor-result:{r.id}" not in claimed]
    if trigger.kind == "new_data":
        events = []
        for path in list_files(trigger.spec["path"]):
            key = file_key(path)
            if key not in claimed:
                events.append((key, {"file": path}))
        return events
    if trigger.kind == "schedule":
        from croniter import croniter

        created = datetime.fromtimestamp(trigger.created_at / 1000, tz=timezone.utc)
        latest = croniter(trigger.spec["cron"], now).get_prev(datetime)
        key = f"tick:{latest.isoformat()}"
        if latest >= created and key not in claimed:
            return [(key, {"tick": latest.isoformat()})]
    return []


def run_action(trigger: service.Trigger, details: dict[str, Any], settings: Settings) -> dict[str, Any]:
    """Do what the trigger says; returns the outcome to record."""
    action = trigger.action
    data = details.get("file") or action.get("data")
    if "dataset" in details:
        data = _dataset_file(details, settings)
    if "retrain" in action:
        from keel.service.retrain import retrain

        result = retrain(action["retrain"], data, target=action.get("target"), eval_data=action.get("eval"),
                         alias=action.get("alias", "production"), executor=action.get("executor", "inprocess"),
                         settings=settings)
        return {"pipeline_run_id": result.pipeline_run_id, "challenger": result.challenger,
                "blessed": result.blessed, "reasons": result.reasons,
                "promotion_request_id": result.promotion_request_id}
    from keel.pipelines.loader import find_pipeline, load_file
    from keel.pipelines.runner import run_pipeline

    pipe = find_pipeline(load_file(action["pipeline"]), action.get("name"))
    params = dict(action.get("params", {}))
    if data is not None:
        if len(pipe.datasets) != 1:
            raise InvalidInput(f"pipeline {pipe.name!r} must have exactly one dataset parameter to take the new "
                               f"file; it has {len(pipe.datasets)}")
        params[pipe.datasets[0]] = data
    run = run_pipeline(pipe, params, executor=action.get("executor", "inprocess"), settings=settings)
    return {"pipeline_run_id": run.run_id, "ran": run.ran, "cached": run.cached}


def _dataset_file(details: dict[str, Any], settings: Settings) -> str:
    """A local Parquet copy of a logged dataset's stored rows (hash-checked), for the action to read."""
    sha = details.get("data_sha256")
    if not sha:
        raise InvalidInput(f"{details['dataset']} was logged without save=True: its rows are not in the store, "
                           f"so there is nothing to retrain on")
    from keel.tracking.fluent import client_for

    target = settings.home / "cache" / "datasets" / f"{sha}.parquet"
    if not target.is_file():
        client_for(settings).ctx.blobs.copy_to(sha, target, name=details["dataset"])
    return str(target)


def fire(ctx: Any, trigger: service.Trigger, key: str, details: dict[str, Any], settings: Settings) -> Any:
    """Claim one firing, run its action, record the outcome (a failed action is recorded, not raised)."""
    firing = service.claim(ctx, trigger, key, details)
    if firing is None:
        return None
    try:
        outcome = run_action(trigger, details, settings)
        status = service.SUCCEEDED
    except Exception as exc:  # noqa: BLE001 - one firing's failure must not stop the scheduler
        log.debug("trigger %s failed: %s", trigger.name, traceback.format_exc())
        outcome, status = {"error": f"{type(exc).__name__}: {exc}"}, service.FAILED
    service.finish(ctx, trigger, firing, status, outcome)
    return firing.id, status, outcome


def fire_manually(ctx: Any, name: str, settings: Settings) -> Any:
    trigger = service.get_trigger(ctx, name)
    return fire(ctx, trigger, f"manual:{uuid.uuid4().hex}", {"by": ctx.actor}, settings)


def scheduler_pass(ctx: Any, settings: Settings, *, now: datetime | None = None,
                   report: Callable[[str], None] = lambda line: None) -> int:
    """Fire everything that is due once; returns how many firings ran."""
    now = now or datetime.now(timezone.utc)
    count = 0
    for trigger in service.list_triggers(ctx):
        if not trigger.enabled or trigger.kind == "manual":
            continue
        try:
            events = due(trigger, service.claimed_keys(ctx, trigger.id), now, ctx)
        except Exception as exc:  # noqa: BLE001 - an unreachable folder skips this trigger this pass
            report(f"trigger {trigger.name}: cannot check it: {type(exc).__name__}: {exc}")
            continue
        for key, details in events:
            fired = fire(ctx, trigger, key, details, settings)
            if fired is not None:
                count += 1
                report(f"trigger {trigger.name} fired ({', '.join(f'{k}={v}' for k, v in details.items())}): "
                       f"{fired[1]}")
    return count


def run_scheduler(ctx: Any, settings: Settings, *, interval: float = 30.0, once: bool = False,
                  report: Callable[[str], None] = lambda line: None) -> None:
    """Loop: a pass, then sleep ``interval`` seconds. Stopping it at any point is safe (see module doc)."""
    while True:
        scheduler_pass(ctx, settings, report=report)
        if once:
            return
        time.sleep(interval)
