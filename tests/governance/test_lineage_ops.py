"""Lineage past the registry: a version's deployments, both ways."""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.store  # also on PostgreSQL


def test_a_deployment_is_downstream_of_its_version_and_leads_back_to_it(client, tmp_path):
    from sklearn.linear_model import LogisticRegression

    import keel
    from keel.service.deployments import deploy
    from keel.service.lineage import build_graph

    rng = np.random.default_rng(0)
    X = rng.normal(size=(200, 3))
    with keel.start_run("d", settings=client.settings):
        keel.log_model(LogisticRegression().fit(X, X[:, 0] > 0), "model", input_example=X[:3], register="d")
    record = deploy(client.ctx, "models:/d/1", target="kubernetes", out=tmp_path / "k8s")

    down = build_graph(client.ctx, "models:/d/1", direction="down")
    [node] = down.of_kind("deployment")
    assert node.id == f"deployment:{record.id}" and node.attrs["target"] == "kubernetes"
    assert [(e.source, e.kind) for e in down.edges if e.target == node.id] == [("models:/d/1", "deployed_as")]
    # From the version up to its data: the deployment is not upstream of anything.
    up = build_graph(client.ctx, "models:/d/1", direction="up")
    assert up.of_kind("deployment") == []
