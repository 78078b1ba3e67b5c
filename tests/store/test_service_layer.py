"""The service layer used directly, as the CLI and the server do: one call, one audited change."""

from __future__ import annotations

import pytest

from keel.entities import RunStatus
from keel.errors import Conflict, NotFound
from keel.service import tracking

pytestmark = pytest.mark.store


def test_single_changes_are_written_and_audited_at_once(client):
    ctx = client.ctx
    run = tracking.create_run(ctx, "svc", name="direct", tags_={"a": "1"})
    tracking.log_params(ctx, run.id, {"lr": 0.1})
    tracking.set_tags(ctx, run.id, {"a": "2"})
    tracking.end_run(ctx, run.id, RunStatus.KILLED)
    got = tracking.get_run(ctx, run.id)
    assert (got.status, got.params, got.tags) == ("KILLED", {"lr": "0.1"}, {"a": "2"})
    actions = [e.action for e in client.audit_log(object_id=run.id)]
    assert actions == ["run.create", "params.log", "tags.set", "run.end"]
    with pytest.raises(Conflict, match="param 'lr'"):
        tracking.log_params(ctx, run.id, {"lr": 0.2})
    with pytest.raises(NotFound, match="run_id 'ghost' does not exist"):
        tracking.end_run(ctx, "ghost")
