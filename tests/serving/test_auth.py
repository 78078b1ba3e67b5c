"""`keel serve --auth`: every route but health needs a valid API token with the right role."""

from __future__ import annotations

import time

import requests

from servers import start_server


def test_tokens_roles_and_revocation(trained_models):
    import keel
    from keel.service import users

    settings = trained_models["settings"]
    ctx = keel.Client(settings).ctx
    users.add_user(ctx, "trainer", "admin")
    users.add_user(ctx, "vic", "viewer")
    vic_info, vic = users.create_token(ctx, user="vic", name="dashboard")
    srv = start_server(trained_models["home"], "models:/tiny/1", "--auth", "--no-log-predictions")
    try:
        body = {"inputs": [{"name": "input", "shape": [1, 20], "datatype": "FP64",
                            "data": trained_models["X"][0].tolist()}]}
        url = f"{srv.url}/v2/models/tiny/infer"
        assert requests.get(f"{srv.url}/v2/health/ready").status_code == 200  # probes need no token
        missing = requests.post(url, json=body)
        assert missing.status_code == 401 and "needs an API token" in missing.json()["error"]
        assert requests.post(url, json=body, headers={"Authorization": "Bearer keel_forged"}).status_code == 401
        ok = requests.post(url, json=body, headers={"Authorization": f"Bearer {vic}"})
        assert ok.status_code == 200
        assert ok.json()["outputs"][0]["data"] == trained_models["tiny"].predict(trained_models["X"][:1]).tolist()
        labels = requests.post(f"{srv.url}/v2/models/tiny/labels", json={"labels": [{"id": "x", "label": 1}]},
                               headers={"Authorization": f"Bearer {vic}"})
        assert labels.status_code == 403 and "editor or higher" in labels.json()["error"]
        users.revoke_token(ctx, vic_info.id)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:  # within the server's 1 s token cache
            status = requests.post(url, json=body, headers={"Authorization": f"Bearer {vic}"}).status_code
            if status == 401:
                break
            time.sleep(0.2)
        assert status == 401
    finally:
        srv.stop()
