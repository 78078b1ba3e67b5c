"""The inference server over real HTTP: a standard v2 client, bad input, batching, overload, metrics."""

from __future__ import annotations

import concurrent.futures as cf
import json

import numpy as np
import pytest
import requests
import tritonclient.http as triton

from servers import start_server


@pytest.fixture(scope="module")
def server(trained_models):
    srv = start_server(trained_models["home"], "models:/tiny/1", "models:/forest/1", "--no-log-predictions")
    yield srv
    srv.stop()


def infer_body(x, name="input", datatype="FP64", **extra):
    return {"inputs": [{"name": name, "shape": list(np.shape(x)), "datatype": datatype,
                        "data": np.asarray(x).ravel().tolist()}], **extra}


def test_tritonclient_with_default_settings(server, trained_models):
    X, tiny, forest = trained_models["X"], trained_models["tiny"], trained_models["forest"]
    client = triton.InferenceServerClient(f"127.0.0.1:{server.port}")
    assert client.is_server_live() and client.is_server_ready() and client.is_model_ready("tiny")
    assert client.get_server_metadata()["name"] == "keel"
    meta = client.get_model_metadata("tiny")
    [spec] = meta["inputs"]
    assert (spec["name"], spec["datatype"], spec["shape"]) == ("input", "FP64", [-1, 20])
    assert [o["name"] for o in meta["outputs"]] == ["label", "probabilities"]

    rows = X[:7]
    inp = triton.InferInput(spec["name"], list(rows.shape), spec["datatype"])
    inp.set_data_from_numpy(rows)  # binary_data=True: Triton's binary tensor extension
    result = client.infer("tiny", [inp], request_id="req-42")
    assert result.get_response()["id"] == "req-42"
    np.testing.assert_array_equal(result.as_numpy("label"), tiny.predict(rows))
    np.testing.assert_allclose(result.as_numpy("probabilities"), tiny.predict_proba(rows), atol=1e-5)

    # Requested outputs, as JSON this time, and the versioned route.
    inp.set_data_from_numpy(rows, binary_data=False)
    only = client.infer("forest", [inp], model_version="1",
                        outputs=[triton.InferRequestedOutput("probabilities", binary_data=False)])
    assert [o["name"] for o in only.get_response()["outputs"]] == ["probabilities"]
    np.testing.assert_allclose(only.as_numpy("probabilities"), forest.predict_proba(rows), atol=1e-5)
    client.close()


def test_plain_json_predict_route(server, trained_models):
    X, tiny = trained_models["X"], trained_models["tiny"]
    answer = requests.post(f"{server.url}/models/tiny/predict", json={"instances": X[:3].tolist()}).json()
    assert answer["predictions"] == tiny.predict(X[:3]).tolist()
    assert np.allclose(answer["probabilities"], tiny.predict_proba(X[:3]), atol=1e-5)
    several = requests.post(f"{server.url}/predict", json={"instances": X[:1].tolist()})
    assert several.status_code == 400 and "/models/NAME/predict" in several.json()["error"]


@pytest.mark.parametrize("body, status, message", [
    (b"{not json", 400, "not valid JSON"),
    (json.dumps(infer_body(np.zeros((1, 20)), datatype="BYTES")).encode(), 400, "BYTES data must be strings"),
    (json.dumps(infer_body([["a"] * 20], datatype="BYTES")).encode(), 400,
     "datatype BYTES does not match expected FP64"),
    (json.dumps(infer_body(np.zeros((2, 19)))).encode(), 400, "shape [2, 19] does not match expected [-1, 20]"),
    (json.dumps(infer_body(np.zeros((2, 20)), name="x")).encode(), 400, "unknown input 'x'; model 'tiny' takes input"),
    (json.dumps({"inputs": [{"name": "input", "shape": [2, 20], "datatype": "FP64", "data": [1, 2]}]}).encode(),
     400, "shape [2, 20] needs 40 values, got 2"),
    (json.dumps(infer_body(np.zeros((1, 20)), outputs=[{"name": "nope"}])).encode(), 400, "unknown output(s) 'nope'"),
    (json.dumps(infer_body(np.zeros((1, 20)), id="a\u0000b")).encode(), 400, "'id' must be a string without NUL"),
    (json.dumps(infer_body(np.zeros((0, 20)))).encode(), 400, "the request holds no rows"),
])
def test_bad_requests_get_a_clear_4xx_and_the_server_keeps_serving(server, trained_models, body, status, message):
    answer = requests.post(f"{server.url}/v2/models/tiny/infer", data=body)
    assert answer.status_code == status
    assert message in answer.json()["error"]
    ok = requests.post(f"{server.url}/v2/models/tiny/infer", json=infer_body(trained_models["X"][:1]))
    assert ok.status_code == 200


def test_unknown_model_version_route_and_huge_body(server, trained_models):
    x = trained_models["X"][:1]
    unknown = requests.post(f"{server.url}/v2/models/nope/infer", json=infer_body(x))
    assert unknown.status_code == 404 and "unknown model 'nope'; serving: tiny, forest" in unknown.json()["error"]
    version = requests.post(f"{server.url}/v2/models/tiny/versions/7/infer", json=infer_body(x))
    assert version.status_code == 404 and "no version '7'" in version.json()["error"]
    assert requests.get(f"{server.url}/v2/models/tiny/versions/1").json()["versions"] == ["1"]
    huge = requests.post(f"{server.url}/v2/models/tiny/infer", data=b"[" + b"0," * (9 * 2**20) + b"0]")
    assert huge.status_code == 413 and "over the" in huge.json()["error"]
    assert requests.get(f"{server.url}/v2/models/tiny/infer").status_code == 405
    assert requests.get(f"{server.url}/v2/health/live").json() == {"live": True}


def test_batched_and_unbatched_answers_are_identical(server, trained_models):
    X = trained_models["X"][:200]
    one_by_one = [requests.post(f"{server.url}/v2/models/forest/infer", json=infer_body(X[i:i + 1])).json()
                  for i in range(len(X))]
    def call(i):
        return requests.post(f"{server.url}/v2/models/forest/infer", json=infer_body(X[i:i + 1])).json()

    with cf.ThreadPoolExecutor(16) as pool:
        concurrent = list(pool.map(call, range(len(X))))
    assert [a["outputs"] for a in concurrent] == [a["outputs"] for a in one_by_one]
    whole = requests.post(f"{server.url}/v2/models/forest/infer", json=infer_body(X)).json()
    labels = [a["outputs"][0]["data"][0] for a in one_by_one]
    assert whole["outputs"][0]["data"] == labels
    metrics = requests.get(f"{server.url}/metrics").text
    sizes = {line.split("{")[0]: line for line in metrics.splitlines() if line.startswith("keel_batch_size")}
    assert "keel_batch_size_count" in sizes


def test_metrics_in_prometheus_format(server, trained_models):
    requests.post(f"{server.url}/v2/models/tiny/infer", json=infer_body(trained_models["X"][:1]))
    requests.post(f"{server.url}/v2/models/tiny/infer", data=b"oops")
    text = requests.get(f"{server.url}/metrics").text
    from prometheus_client.parser import text_string_to_metric_families

    families = {f.name: f for f in text_string_to_metric_families(text)}
    statuses = {(s.labels["model"], s.labels["route"], s.labels["status"])
                for s in families["keel_requests"].samples if s.name == "keel_requests_total"}
    assert {("tiny", "infer", "200"), ("tiny", "infer", "400")} <= statuses
    assert "keel_request_duration_seconds" in families and "keel_batch_size" in families
    assert {s.labels["model"] for s in families["keel_queue_depth"].samples} == {"tiny", "forest"}


def test_overload_answers_503_with_retry_after_then_recovers(trained_models):
    srv = start_server(trained_models["home"], "models:/slow/1", "--no-log-predictions", "--max-queue", "4",
                       "--max-batch-size", "1")
    try:
        def call(_):
            r = requests.post(f"{srv.url}/v2/models/slow/infer", json=infer_body(np.ones((1, 3))), timeout=60)
            return r.status_code, r.headers.get("retry-after"), r.json()

        with cf.ThreadPoolExecutor(48) as pool:
            answers = list(pool.map(call, range(96)))
        codes = [a[0] for a in answers]
        assert set(codes) == {200, 503}, codes
        rejected = [a for a in answers if a[0] == 503]
        assert all(a[1] == "1" and "overloaded" in a[2]["error"] for a in rejected)
        assert all(a[2]["outputs"][0]["data"] == [3.0] for a in answers if a[0] == 200)
        depth = [line for line in requests.get(f"{srv.url}/metrics").text.splitlines()
                 if line.startswith("keel_queue_depth")]
        assert depth == ['keel_queue_depth{model="slow"} 0.0']
        assert requests.post(f"{srv.url}/v2/models/slow/infer", json=infer_body(np.ones((1, 3)))).status_code == 200
    finally:
        srv.stop()


def test_structured_access_log_has_a_json_line_per_request(trained_models):
    srv = start_server(trained_models["home"], "models:/tiny/1", "--no-log-predictions")
    try:
        x = trained_models["X"][:1]
        assert requests.post(f"{srv.url}/v2/models/tiny/infer", json=infer_body(x)).status_code == 200
        assert requests.post(f"{srv.url}/v2/models/nobody/infer", json=infer_body(x)).status_code == 404
        assert requests.get(f'{srv.url}/v2/models/tiny"\\x/ready').status_code == 404
    finally:
        output = srv.stop()
    entries = [json.loads(line) for line in output.splitlines() if line.startswith('{"ts"')]
    seen = {(e["method"], e["path"], e["status"], e["model"]) for e in entries}
    assert ("POST", "/v2/models/tiny/infer", 200, "tiny") in seen
    assert ("POST", "/v2/models/nobody/infer", 404, None) in seen  # a made-up name is not a model
    assert any(e["path"] == '/v2/models/tiny"\\x/ready' and e["status"] == 404 for e in entries)  # escaped, parsed back
    assert all(isinstance(e["ts"], float) and e["ms"] >= 0 for e in entries)
