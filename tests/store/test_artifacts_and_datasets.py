"""Run artifacts and datasets through the client, on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import os

import pytest

from keel.errors import InvalidInput, NotFound

pytestmark = pytest.mark.store


def test_log_list_read_download(client, tmp_path):
    run = client.create_run()
    src = tmp_path / "src"
    (src / "plots").mkdir(parents=True)
    (src / "plots" / "roc.txt").write_text("roc")
    (src / "model.bin").write_bytes(b"\x00weights")
    client.log_artifacts(run.id, src)
    client.log_artifact(run.id, src / "model.bin", "copies/model.bin")
    client.log_dict(run.id, {"a": 1}, "meta/info.json")

    paths = [a.path for a in client.list_artifacts(run.id)]
    assert paths == ["copies/model.bin", "meta/info.json", "model.bin", "plots/roc.txt"]
    assert [a.path for a in client.list_artifacts(run.id, "plots")] == ["plots/roc.txt"]
    assert json.loads(client.read_artifact(run.id, "meta/info.json")) == {"a": 1}
    infos = {a.path: a for a in client.list_artifacts(run.id)}
    assert infos["model.bin"].sha256 == infos["copies/model.bin"].sha256  # stored once

    dest = tmp_path / "dest"
    client.download_artifacts(run.id, dest)
    assert (dest / "plots" / "roc.txt").read_text() == "roc"
    assert (dest / "copies" / "model.bin").read_bytes() == b"\x00weights"


def test_escaping_artifact_paths_are_refused(client, tmp_path):
    run = client.create_run()
    f = tmp_path / "f.txt"
    f.write_text("x")
    for bad in ("../x", "/abs/x", "%2e%2e/x", "a/../../x"):
        with pytest.raises(InvalidInput, match="artifact path"):
            client.log_artifact(run.id, f, bad)
    assert client.list_artifacts(run.id) == []


def test_symlink_out_of_a_logged_directory_is_refused(client, tmp_path):
    run = client.create_run()
    src = tmp_path / "src"
    src.mkdir()
    (src / "ok.txt").write_text("ok")
    secret = tmp_path / "secret.txt"
    secret.write_text("do not upload")
    os.symlink(secret, src / "leak.txt")
    with pytest.raises(InvalidInput, match=r"leak.txt: it is a symlink to .*secret.txt, outside"):
        client.log_artifacts(run.id, src)
    assert client.list_artifacts(run.id) == []


def test_download_refuses_a_symlink_in_the_destination(client, tmp_path):
    run = client.create_run()
    client.log_dict(run.id, {"a": 1}, "sub/x.json")
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    dest.mkdir()
    outside.mkdir()
    os.symlink(outside, dest / "sub")
    with pytest.raises(InvalidInput, match="resolves outside"):
        client.download_artifacts(run.id, dest)
    assert list(outside.iterdir()) == []


def test_artifact_errors_name_what_is_missing(client, tmp_path):
    run = client.create_run()
    with pytest.raises(NotFound, match="is not a file"):
        client.log_artifact(run.id, tmp_path / "nope.txt")
    with pytest.raises(NotFound, match="has no artifact 'nope.txt'"):
        client.read_artifact(run.id, "nope.txt")
    with pytest.raises(NotFound, match="does not exist"):
        client.log_dict("ghost-run", {}, "x.json")


def test_log_dataset_records_hash_schema_profile_and_links_run(client, tmp_path):
    import pandas as pd
    frame = pd.DataFrame({"age": [23, 35, None, 41], "city": ["Oslo", "Lima", "Oslo", None]})
    run = client.create_run()
    info = client.log_dataset(run.id, frame, "customers", save=True)
    assert info.digest.startswith("sha256:") and info.num_rows == 4
    assert [c["name"] for c in info.schema] == ["age", "city"]
    age = info.profile["columns"]["age"]
    assert age["missing"] == 1 and age["min"] == 23 and age["max"] == 41
    assert info.profile["columns"]["city"]["frequencies"]["values"][0] == "Oslo"

    csv = tmp_path / "customers.csv"
    frame.to_csv(csv, index=False)
    other = client.create_run()
    from_file = client.log_dataset(other.id, csv, "customers-file", context="evaluation")
    assert from_file.source == str(csv)

    linked = client.run_datasets(run.id)
    assert [(d.name, d.context, d.digest) for d in linked] == [("customers", "training", info.digest)]
    # The saved data round-trips through the artifact store, hash-verified.
    import io

    import pyarrow.parquet as pq

    table = pq.read_table(io.BytesIO(client.ctx.blobs.get_bytes(info.data_sha256)))
    assert table.num_rows == 4 and table.column_names == ["age", "city"]


def test_same_dataset_twice_is_stored_once(client):
    data = {"x": [1.0, 2.0, 3.0]}
    a, b = client.create_run(), client.create_run()
    first = client.log_dataset(a.id, data, "d")
    second = client.log_dataset(b.id, data, "d")
    assert first.id == second.id
    changed = client.log_dataset(b.id, {"x": [1.0, 2.0, 3.5]}, "d")
    assert changed.id != first.id and changed.digest != first.digest


def test_log_dataset_bad_input_is_named(client):
    run = client.create_run()
    with pytest.raises(InvalidInput, match=r"dataset 'weird': .*set"):
        client.log_dataset(run.id, {1, 2, 3}, "weird")
    with pytest.raises(InvalidInput, match=r"dataset 'gone': .*missing.csv"):
        client.log_dataset(run.id, "/nonexistent/missing.csv", "gone")
