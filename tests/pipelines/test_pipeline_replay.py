"""Replay: a model version knows the pipeline run that made it, and replaying it on the
original data reproduces the model's predictions exactly, from the recorded code."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import keel
from keel.pipelines.replay import replay
from keel.pipelines.runner import run_file
from keel.service.pipelines import pipeline_run_of_version

pytestmark = pytest.mark.store


def test_a_model_version_knows_its_pipeline_run(churn_project, settings, client):
    first = run_file(churn_project / "pipe.py", {"data": str(churn_project / "weak.csv")}, settings=settings)
    assert first.value() == 1
    record = pipeline_run_of_version(client.ctx, "churn", 1)
    assert record.run_id == first.run_id and record.pipeline == "churn"
    assert record.params == {"data": str(churn_project / "weak.csv"), "target": "label", "C": 1.0, "seed": 0}
    import hashlib

    assert record.datasets["data"]["sha256"] == hashlib.sha256((churn_project / "weak.csv").read_bytes()).hexdigest()
    from keel.pipelines.replay import load_record

    recorded = load_record(client.ctx, record.record_sha256)
    assert set(recorded["sources"]) == {"pipe.py", "features.py"}  # the helper module is recorded too
    assert "scikit-learn==" in recorded["lock"] and "pandas==" in recorded["lock"]
    version_run = client.get_run(keel.registry.get_version("churn", 1, settings=settings).run_id)
    assert version_run.parent_run_id == first.run_id and version_run.name == "train"


def test_replay_on_the_original_data_reproduces_the_predictions_exactly(churn_project, settings):
    first = run_file(churn_project / "pipe.py", {"data": str(churn_project / "new.csv")}, settings=settings)
    # The working tree changes after the run: the replay must use the recorded code, not this.
    (churn_project / "features.py").write_text("def clip_outliers(frame):\n    raise RuntimeError('edited')\n")

    again = replay(first.run_id, cache=False, settings=settings)
    assert sorted(again.ran) == ["prepare", "train"]
    assert again.value() == 2

    frame = pd.read_csv(churn_project / "eval.csv").drop(columns=["label"])
    original = keel.load_model("models:/churn/1", settings=settings)
    replayed = keel.load_model("models:/churn/2", settings=settings)
    assert np.array_equal(original.predict_proba(frame), replayed.predict_proba(frame))
    assert np.array_equal(original.predict(frame), replayed.predict(frame))


def test_replay_with_new_data_reruns_and_keeps_the_rest_of_the_record(churn_project, settings, client):
    from keel.service.pipelines import get_pipeline_run

    first = run_file(churn_project / "pipe.py", {"data": str(churn_project / "weak.csv")}, settings=settings)
    again = replay(first.run_id, data=str(churn_project / "new.csv"), settings=settings)
    assert sorted(again.ran) == ["prepare", "train"] and again.value() == 2
    record = get_pipeline_run(client.ctx, again.run_id)
    assert record.replay_of == first.run_id
    assert record.params["C"] == 1.0 and record.params["data"] == str(churn_project / "new.csv")
    assert client.get_run(again.run_id).tags["keel.pipeline.replay_of"] == first.run_id


def test_strict_replay_refuses_a_different_environment(churn_project, settings, client):
    import json

    from keel.errors import PolicyViolation
    from keel.pipelines.replay import check_environment, load_record
    from keel.service.pipelines import get_pipeline_run

    first = run_file(churn_project / "pipe.py", {"data": str(churn_project / "weak.csv")}, settings=settings)
    record = load_record(client.ctx, get_pipeline_run(client.ctx, first.run_id).record_sha256)
    assert check_environment(record, strict=True) == []  # recorded here: nothing differs
    lines = [line if not line.startswith("numpy==") else "numpy==0.0.1" for line in record["lock"].splitlines()]
    changed = {**record, "lock": "\n".join(lines) + "\n"}
    with pytest.raises(PolicyViolation, match=r"numpy: locked 0\.0\.1, installed"):
        check_environment(changed, strict=True)
    with pytest.warns(UserWarning, match=r"numpy: locked 0\.0\.1"):
        assert check_environment(json.loads(json.dumps(changed)), strict=False)
