"""Kubernetes Jobs: pipeline steps (`keel pipeline jobs`) and batch scoring (`keel deploy --target job`)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import spec_for
from keel.deploy.profiles import load_profiles
from keel.deploy.validate import validate_documents, validate_yaml
from keel.testing.cli import run_cli as keel

PIPELINE = """
import keel
import pandas as pd

from features import scale


@keel.step(outputs=2)
def prepare(path, target: str):
    frame = scale(pd.read_csv(path))
    return frame.drop(columns=[target]), frame[target]


@keel.step(resources={RESOURCES})
def train(X, y, C: float):
    from sklearn.linear_model import LogisticRegression

    return float(LogisticRegression(C=C).fit(X, y).score(X, y))


@keel.pipeline(datasets=["data"])
def churn(data="train.csv", target="label", C=1.0):
    X, y = prepare(data, target)
    return train(X, y, C)
"""
TRAIN = {"cpus": 2, "memory": "6GiB", "gpus": 1, "timeout_s": 900}
KEEL_TOML = """
[profiles.batch]
cpu = "500m"
memory = "1Gi"
cpu_limit = "1"
memory_limit = "2Gi"
node_selector = { pool = "batch" }
tolerations = [{ key = "dedicated", operator = "Equal", value = "ml", effect = "NoSchedule" }]
env = { OMP_NUM_THREADS = "1", REGION = "eu" }

[profiles.gpu]
cpu = "4"
memory = "16Gi"
gpu = 1
gpu_type = "NVIDIA-L4"
"""


def project(folder: Path, resources: dict | str = TRAIN) -> Path:
    """pipe.py + features.py + train.csv + keel.toml in ``folder``."""
    import numpy as np

    folder.mkdir(parents=True, exist_ok=True)
    spec = resources if isinstance(resources, str) else repr(resources)
    (folder / "pipe.py").write_text(textwrap.dedent(PIPELINE).replace("{RESOURCES}", spec))
    (folder / "features.py").write_text("def scale(frame):\n    return frame.assign(f0=frame['f0'] / 10)\n")
    (folder / "keel.toml").write_text(KEEL_TOML)
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(120, 3)), columns=["f0", "f1", "f2"])
    frame.assign(label=(frame["f1"] > 0).astype(int)).to_csv(folder / "train.csv", index=False)
    return folder


def jobs_of(out: Path) -> dict[str, dict]:
    """step -> its Job, from the written files in run order."""
    order = (out / "run-order.txt").read_text().split()
    docs = [next(yaml.safe_load_all((out / rel).read_text())) for rel in order[1:]]
    return {d["metadata"]["annotations"]["keel.dev/step"]: d for d in docs}


def test_pipeline_jobs_validate_and_carry_step_resources_over_the_profile(tmp_path, keel_env) -> None:
    folder = project(tmp_path / "proj")
    done = keel(keel_env, "pipeline", "jobs", "pipe.py", "--stage", "batch", "--out", "jobs", "--image",
                "registry.example/churn:1", "-p", "data=s3://bucket/train.csv", "-p", "C=0.5", "--json", cwd=folder)
    report = json.loads(done.stdout)
    out = folder / "jobs"
    assert (out / "run-order.txt").read_text().split() == ["00-sources.yaml", "01-churn-prepare.yaml",
                                                           "02-churn-train.yaml"]
    assert report["jobs"] == ["01-churn-prepare.yaml", "02-churn-train.yaml"] and report["validated"]
    assert os.access(out / "run.sh", os.X_OK)
    script = (out / "run.sh").read_text()
    assert script.index("kubectl apply -f 01-churn-prepare.yaml") < script.index("wait_job churn-prepare") < \
        script.index("kubectl apply -f 02-churn-train.yaml")
    for rel in (out / "run-order.txt").read_text().split():
        assert validate_yaml((out / rel).read_bytes())  # Kubernetes 1.30 and the newest schemas, strictly

    jobs = jobs_of(out)
    prepare, train = jobs["prepare"], jobs["train"]
    assert train["metadata"]["annotations"]["keel.dev/depends-on"] == "churn-prepare"
    assert prepare["metadata"]["annotations"]["keel.dev/depends-on"] == ""

    # prepare declares nothing: the profile's resources. train's own win: cpu, memory (limit raised to it), GPU.
    pod = prepare["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["resources"] == {"requests": {"cpu": "500m", "memory": "1Gi"},
                                      "limits": {"cpu": "1", "memory": "2Gi"}}
    assert "activeDeadlineSeconds" not in prepare["spec"]
    train_pod = train["spec"]["template"]["spec"]
    assert train_pod["containers"][0]["resources"] == {
        "requests": {"cpu": "2", "memory": "6Gi"}, "limits": {"cpu": "2", "memory": "6Gi", "nvidia.com/gpu": 1}}
    assert train["spec"]["activeDeadlineSeconds"] == 900

    # Placement and env from the profile (its env wins over keel's thread default), in every Job.
    for job in (prepare, train):
        spec = job["spec"]["template"]["spec"]
        assert spec["nodeSelector"] == {"pool": "batch"}
        assert spec["tolerations"] == [{"key": "dedicated", "operator": "Equal", "value": "ml",
                                        "effect": "NoSchedule"}]
        env = {e["name"]: e["value"] for e in spec["containers"][0]["env"]}
        assert env["REGION"] == "eu" and env["OMP_NUM_THREADS"] == "1" and env["KEEL_HOME"] == "/var/lib/keel"
        assert spec["containers"][0]["envFrom"] == [{"secretRef": {"name": "keel-store"}}]
        assert spec["restartPolicy"] == "Never" and spec["securityContext"]["runAsNonRoot"] is True
        ctx = spec["containers"][0]["securityContext"]
        assert ctx["allowPrivilegeEscalation"] is False and ctx["readOnlyRootFilesystem"] is True
        assert job["spec"]["backoffLimit"] == 2
        assert spec["containers"][0]["image"] == "registry.example/churn:1"
    args = train_pod["containers"][0]["args"]
    assert args[:3] == ["step", "/app/pipeline/pipe.py", "train"]
    assert json.loads(args[args.index("--params") + 1]) == {"C": 0.5, "data": "s3://bucket/train.csv",
                                                            "target": "label"}
    # The sources travel in a ConfigMap, mounted where the command looks for them.
    sources = yaml.safe_load((out / "00-sources.yaml").read_text().split("\n", 1)[1])
    assert sorted(sources["data"]) == ["features.py", "pipe.py"]
    assert sources["data"]["pipe.py"] == (folder / "pipe.py").read_text()


def test_a_gpu_step_gets_nvidia_gpu_limits_and_the_profile_gpu_node(tmp_path, settings) -> None:
    from keel.pipelines.executors.kubernetes import render_jobs
    from keel.pipelines.loader import find_pipeline, load_file

    folder = project(tmp_path / "proj", {"gpus": 2, "cpus": 8})
    pipe = find_pipeline(load_file(folder / "pipe.py"))
    profiles = load_profiles({"gpu": {"cpu": "4", "memory": "16Gi", "gpu": 1, "gpu_type": "NVIDIA-L4"}})
    plan = render_jobs(pipe, {"data": "s3://b/t.csv"}, profile=profiles["gpu"])
    docs = {rel: next(yaml.safe_load_all(data)) for rel, data in plan.files.items() if rel.endswith(".yaml")}
    assert validate_documents(list(docs.values()))
    train = docs["02-churn-train.yaml"]["spec"]["template"]["spec"]
    assert train["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 2
    assert train["containers"][0]["resources"]["requests"] == {"cpu": "8", "memory": "16Gi"}
    assert train["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-L4"}
    # The step that asks for nothing gets the stage's GPU.
    prepare = docs["01-churn-prepare.yaml"]["spec"]["template"]["spec"]
    assert prepare["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 1


@pytest.mark.parametrize("resources, needle", [
    ({"gpus": 0.5}, "step 'train': resources['gpus'] = 0.5, but Kubernetes gives whole GPUs (nvidia.com/gpu); "
                    "ask for 1"),
    ({"cpus": 0.0005}, "step 'train': resources['cpus'] = 0.0005 is finer than Kubernetes' millicore"),
    ({"memory": "lots"}, "step 'train': memory must be a byte count such as 2147483648, '512MiB' or '4GB', "
                         "got 'lots'"),
])
def test_an_invalid_step_quantity_fails_before_anything_is_written(resources, needle, tmp_path, keel_env) -> None:
    folder = project(tmp_path / "proj", resources)
    done = keel(keel_env, "pipeline", "jobs", "pipe.py", "--stage", "batch", "--out", "jobs", cwd=folder,
                check=False)
    assert done.returncode == 1
    assert done.stderr.strip().startswith("error: ") and needle in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert not (folder / "jobs").exists() and not list(folder.glob(".jobs*"))


def test_a_bad_profile_or_a_used_folder_fails_before_writing(tmp_path, keel_env) -> None:
    folder = project(tmp_path / "proj")
    (folder / "keel.toml").write_text('[profiles.batch]\nmemory = "lots"\n')
    bad = keel(keel_env, "pipeline", "jobs", "pipe.py", "--stage", "batch", "--out", "jobs", cwd=folder, check=False)
    assert bad.returncode == 1 and "[profiles.batch] memory must be bytes" in bad.stderr
    assert not (folder / "jobs").exists()
    (folder / "keel.toml").write_text(KEEL_TOML)
    (folder / "jobs").mkdir()
    (folder / "jobs" / "keep.txt").write_text("mine")
    used = keel(keel_env, "pipeline", "jobs", "pipe.py", "--out", "jobs", cwd=folder, check=False)
    assert used.returncode == 1 and "is not an empty folder" in used.stderr
    assert [p.name for p in (folder / "jobs").iterdir()] == ["keep.txt"]


def test_the_step_jobs_commands_run_the_pipeline_step_by_step(tmp_path, keel_env) -> None:
    """Run each Job's container command here, in order, each from its own copy of the mounted sources:
    the second Job finds the first step in the cache and runs only its own."""
    folder = project(tmp_path / "proj", {"cpus": 1, "timeout_s": 300})
    data = folder / "train.csv"
    keel(keel_env, "pipeline", "jobs", "pipe.py", "--out", "jobs", "-p", f"data={data}", cwd=folder)
    jobs = jobs_of(folder / "jobs")
    outcomes = {}
    for i, step in enumerate(["prepare", "train"]):
        mounted = tmp_path / f"pod-{i}"  # a fresh pod: the sources at another path
        mounted.mkdir()
        for name in ("pipe.py", "features.py"):
            shutil.copy(folder / name, mounted / name)
        container = jobs[step]["spec"]["template"]["spec"]["containers"][0]
        args = [a.replace("/app/pipeline", str(mounted)) for a in container["args"]]
        env = {**keel_env, "PYTHONPATH": str(mounted)}
        done = subprocess.run([sys.executable, *container["command"][1:], *args], env=env, cwd=mounted,
                              capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr
        outcomes[step] = json.loads(done.stdout.strip().splitlines()[-1])
    assert outcomes["prepare"]["steps"] == {"prepare": "ran"}
    assert outcomes["train"]["steps"] == {"prepare": "cached", "train": "ran"}
    assert outcomes["train"]["status"] == "FINISHED"


def test_the_job_target_renders_a_scoring_job_with_the_stage_profile(sk_bundle, tmp_path) -> None:
    from keel.deploy import job
    from keel.deploy.base import get_target
    from keel.errors import InvalidInput
    from keel.testing.deploy import check_target

    profile = load_profiles({"gpu": {"cpu": "4", "memory": "16Gi", "gpu": 1, "gpu_type": "NVIDIA-L4",
                                     "env": {"REGION": "eu"}}})["gpu"]
    options = {"input": "s3://bucket/new.csv", "output": "s3://bucket/scored.parquet", "batch_size": 5000}
    spec = spec_for(sk_bundle, target="job", profile=profile, options=options)
    check_target("job", spec, tmp_path)
    doc = job.manifest(spec)
    assert validate_documents([doc]) == ["Job/churn-v3"]
    pod = doc["spec"]["template"]["spec"]
    container = pod["containers"][0]
    # A registry model: keel score fetches and hash-checks it with the store's Secret, no init step.
    assert container["args"] == ["score", "models:/churn/3", "--input", "s3://bucket/new.csv", "--output",
                                 "s3://bucket/scored.parquet", "--batch-size", "5000"]
    assert "initContainers" not in pod
    assert container["resources"] == {"requests": {"cpu": "4", "memory": "16Gi"},
                                      "limits": {"memory": "16Gi", "nvidia.com/gpu": 1}}
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-L4"}
    assert {"name": "REGION", "value": "eu"} in container["env"]

    # A bundle folder is baked into the image (or comes from a claim).
    pvc = job.manifest(spec_for(sk_bundle, target="job", model_uri=str(sk_bundle),
                                options={**options, "bundle_from": "pvc:models"}))
    validate_documents([pvc])
    assert pvc["spec"]["template"]["spec"]["containers"][0]["args"][1] == "/models/bundle"

    target = get_target("job")
    for missing, needle in ((("input",), "needs --input URI and --output URI"),
                            (("output",), "--output is missing")):
        with pytest.raises(InvalidInput, match=needle):
            target.check(spec_for(sk_bundle, target="job", options={k: v for k, v in options.items()
                                                                    if k not in missing}))
    with pytest.raises(InvalidInput, match="--output must name a .parquet"):
        target.check(spec_for(sk_bundle, target="job", options={**options, "output": "s3://b/out.csv"}))


def test_keel_deploy_target_job_writes_a_valid_job_or_nothing(sk_bundle, tmp_path, keel_env) -> None:
    (tmp_path / "keel.toml").write_text('[profiles.batch]\ncpu = "2"\nmemory = "4Gi"\n')
    base = ["deploy", str(sk_bundle), "--target", "job", "--stage", "batch", "--name", "churn-score"]
    refused = keel(keel_env, *base, "--out", "refused", "--input", "s3://b/in.csv", cwd=tmp_path, check=False)
    assert refused.returncode == 1 and "--output is missing" in refused.stderr
    assert not (tmp_path / "refused").exists()

    done = keel(keel_env, *base, "--out", "job", "--input", "/data/in.parquet", "--output", "/data/out.parquet",
                "--json", cwd=tmp_path)
    record = json.loads(done.stdout)
    assert record["target"] == "job" and record["status"] == "written" and record["stage"] == "batch"
    assert record["options"]["input"] == "/data/in.parquet"
    assert list(record["files"]) == ["churn-score-job.yaml"]
    doc = next(yaml.safe_load_all((tmp_path / "job" / "churn-score-job.yaml").read_text()))
    assert validate_documents([doc]) == ["Job/churn-score"]
    assert doc["spec"]["template"]["spec"]["containers"][0]["args"][:2] == ["score", "/app/bundle"]


def test_executor_kubernetes_refuses_a_store_the_pods_cannot_reach(tmp_path, keel_env) -> None:
    folder = project(tmp_path / "proj", {"cpus": 1})
    done = keel(keel_env, "pipeline", "run", "pipe.py", "--executor", "kubernetes", "--stage", "batch",
                "-p", f"data={folder / 'train.csv'}", cwd=folder, check=False)
    assert done.returncode == 1 and len(done.stderr.strip().splitlines()) == 1
    assert "--executor kubernetes runs steps in pods, which cannot reach this machine's metadata store" in done.stderr
    assert "keel pipeline jobs" in done.stderr


def test_a_step_task_job_validates_and_its_command_runs_the_task(tmp_path, settings, keel_env) -> None:
    """The Job --executor kubernetes submits for one task; its command run here with a fresh KEEL_HOME,
    as a pod has: the dataset comes from the blob store, the result is the log's last line."""
    from keel.pipelines.executors.base import StepResult, StepTask
    from keel.pipelines.executors.kubernetes import RESULT_MARK, task_job
    from keel.pipelines.loader import load_file
    from keel.pipelines.runner import stage_dataset
    from keel.tracking.client import Client

    folder = project(tmp_path / "proj", {"cpus": 1})
    module = load_file(folder / "pipe.py")
    client = Client(settings)
    try:
        run = client.create_run("churn", name="prepare")
        staged = stage_dataset(client.ctx.blobs, settings, str(folder / "train.csv"), "data")
    finally:
        client.close()
    task = StepTask(node="prepare", module=module.__name__, attr="prepare", pipeline_file=str(folder / "pipe.py"),
                    pipeline_module=module.__name__, sys_path=[str(folder)],
                    arguments={"path": {"@": "data", "path": staged["path"]},
                               "target": {"@": "value", "value": "label"}},
                    run_id=run.id, outputs=2, resources={"cpus": 3, "gpus": 1, "memory": 2 << 30, "timeout_s": 60})
    profile = load_profiles({"batch": {"cpu": "1", "memory": "1Gi", "node_selector": {"pool": "batch"}}})["batch"]
    configmap, job = task_job(task, profile=profile, image="registry.example/churn:1")
    assert validate_documents([configmap, job]) == [f"ConfigMap/{configmap['metadata']['name']}",
                                                    f"Job/{job['metadata']['name']}"]
    pod = job["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"] == {"requests": {"cpu": "3", "memory": "2Gi"},
                                                 "limits": {"memory": "2Gi", "nvidia.com/gpu": 1}}
    assert job["spec"]["activeDeadlineSeconds"] == 60 and pod["nodeSelector"] == {"pool": "batch"}
    args = pod["containers"][0]["args"]
    moved = json.loads(args[1])
    assert args[0] == "task" and moved["pipeline_file"] == "/app/pipeline/pipe.py"
    assert moved["arguments"]["path"] == {"@": "data", "sha256": staged["sha256"],
                                          "path": f"/var/lib/keel/cache/pipelines/data/{staged['sha256']}/train.csv"}

    mounted, pod_home = tmp_path / "pod" / "sources", tmp_path / "pod" / "home"
    mounted.mkdir(parents=True)
    for name in ("pipe.py", "features.py"):
        shutil.copy(folder / name, mounted / name)
    text = args[1].replace("/app/pipeline", str(mounted)).replace("/var/lib/keel", str(pod_home))
    env = {**keel_env, "KEEL_HOME": str(pod_home), "PYTHONPATH": str(mounted)}
    done = subprocess.run([sys.executable, "-m", "keel.pipelines.executors.kubernetes", "task", text], env=env,
                          cwd=mounted, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    last = done.stdout.strip().splitlines()[-1]
    assert last.startswith(RESULT_MARK)
    result = StepResult.from_json(last[len(RESULT_MARK):])
    assert result.ok and [o["kind"] for o in result.outputs] == ["pandas", "pandas-series"]
    from keel.artifacts.blobs import BlobStore
    from keel.pipelines import values

    blobs = BlobStore(settings.artifact_uri)  # the outputs are in the shared store, where the runner reads them
    y = values.decode("pandas-series", blobs.get_bytes(result.outputs[1]["sha256"]))
    assert y.tolist() == pd.read_csv(folder / "train.csv")["label"].tolist()
    assert (pod_home / "cache/pipelines/data" / staged["sha256"] / "train.csv").read_bytes() == \
        (folder / "train.csv").read_bytes()


def test_a_job_whose_pod_can_never_start_is_reported_not_waited_for() -> None:
    """The executor gives up on a pod stuck in ImagePullBackOff (the Job itself never fails)."""
    from types import SimpleNamespace as NS

    from keel.pipelines.executors.kubernetes import pod_blocker

    def pod(reason, message="", init=False):
        container = NS(name="main", state=NS(waiting=NS(reason=reason, message=message) if reason else None))
        statuses = {"container_statuses": None if init else [container],
                    "init_container_statuses": [container] if init else None}
        return NS(status=NS(**statuses))

    assert pod_blocker([pod(None), pod("ContainerCreating")]) is None  # still starting
    assert pod_blocker([pod("ImagePullBackOff", 'Back-off pulling image "keel-pipeline:latest"')]) == \
        'main: ImagePullBackOff: Back-off pulling image "keel-pipeline:latest"'
    assert pod_blocker([pod("CreateContainerConfigError", "secret keel-store not found", init=True)]).startswith(
        "main: CreateContainerConfigError")
