"""Every target passes the conformance checks; Kubernetes and KServe manifests validate offline."""

from __future__ import annotations

import dataclasses

import pytest
import yaml

from conftest import spec_for
from keel.deploy.base import TARGETS
from keel.deploy.profiles import load_profiles
from keel.deploy.validate import validate_documents
from keel.errors import InvalidInput
from keel.testing.deploy import check_target

PROFILES = load_profiles({
    "dev": {},
    "production": {"cpu": "2", "memory": "4Gi", "cpu_limit": "4", "replicas": 3, "min_replicas": 2,
                   "max_replicas": 8, "target_cpu_utilization": 70, "canary_traffic_percent": 10,
                   "node_selector": {"pool": "inference"}, "env": {"OMP_NUM_THREADS": "2"},
                   "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml",
                                    "effect": "NoSchedule"}]},
    "gpu": {"cpu": "4", "memory": "16Gi", "gpu": 2, "gpu_type": "NVIDIA-L4",
            "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]},
})


@pytest.mark.parametrize("target", sorted(TARGETS))
def test_every_target_passes_the_conformance_checks(target, sk_bundle, onnx_bundle, tmp_path) -> None:
    bundle = onnx_bundle["bundle"] if target == "edge" else sk_bundle
    uri = str(bundle) if target in ("edge", "local") else "models:/churn/3"
    options = {"input": "s3://bucket/in.csv", "output": "s3://bucket/out.parquet"} if target == "job" else {}
    spec = spec_for(bundle, target=target, profile=PROFILES["production"], model_uri=uri, options=options)
    hashes = check_target(target, spec, tmp_path)
    assert hashes


@pytest.mark.parametrize("target", ["kubernetes", "kserve"])
@pytest.mark.parametrize("stage", sorted(PROFILES))
@pytest.mark.parametrize("bundle_from", [None, "image", "pvc:models"])
def test_manifests_validate_for_every_profile_and_bundle_source(target, stage, bundle_from, sk_bundle) -> None:
    from keel.deploy import kserve, kubernetes

    spec = spec_for(sk_bundle, target=target, profile=PROFILES[stage], options={"bundle_from": bundle_from})
    docs = kubernetes.manifests(spec) if target == "kubernetes" else [kserve.manifest(spec)]
    checked = validate_documents(docs)
    kinds = [c.split("/")[0] for c in checked]
    if target == "kubernetes":
        autoscaled = PROFILES[stage].autoscaled
        assert kinds == ["Deployment", "Service"] + (["HorizontalPodAutoscaler"] if autoscaled else [])
    else:
        assert kinds == ["InferenceService"]


def test_kubernetes_manifest_carries_the_profile(sk_bundle) -> None:
    from keel.deploy import kubernetes

    spec = spec_for(sk_bundle, profile=PROFILES["gpu"])
    deployment = kubernetes.manifests(spec)[0]
    pod = deployment["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert container["resources"] == {"requests": {"cpu": "4", "memory": "16Gi"},
                                      "limits": {"memory": "16Gi", "nvidia.com/gpu": 2}}
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-L4"}
    assert pod["tolerations"][0]["key"] == "nvidia.com/gpu"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    # models:/ URIs are fetched from the store by an init step into a shared volume.
    init = pod["initContainers"][0]
    assert init["command"][-2:] == ["models:/churn/3", "/models/bundle"]
    assert container["args"][1] == "churn=/models/bundle"

    prod = kubernetes.manifests(spec_for(sk_bundle, profile=PROFILES["production"]))
    hpa = prod[2]["spec"]
    assert (hpa["minReplicas"], hpa["maxReplicas"]) == (2, 8)
    assert hpa["metrics"][0]["resource"]["target"]["averageUtilization"] == 70
    assert prod[0]["spec"]["replicas"] == 2


def test_kserve_takes_replicas_and_canary_from_the_profile(sk_bundle) -> None:
    from keel.deploy import kserve

    isvc = kserve.manifest(spec_for(sk_bundle, target="kserve", profile=PROFILES["production"]))
    predictor = isvc["spec"]["predictor"]
    assert (predictor["minReplicas"], predictor["maxReplicas"], predictor["canaryTrafficPercent"]) == (2, 8, 10)
    container = predictor["containers"][0]
    assert container["name"] == "kserve-container"
    assert {"name": "PROTOCOL", "value": "v2"} in container["env"]
    assert container["args"][:2] == ["serve", "churn=/models/bundle"]


@pytest.mark.parametrize("break_it, needle", [
    (lambda d: d["spec"].__setitem__("replicas", "three"), "spec.replicas"),
    (lambda d: d["spec"]["template"]["spec"]["containers"][0].__setitem__("imagePullPolcy", "x"), "imagePullPolcy"),
    (lambda d: d["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"].pop("port"), "port"),
])
def test_the_validator_catches_broken_manifests(break_it, needle, sk_bundle) -> None:
    from keel.deploy import kubernetes

    deployment = kubernetes.manifests(spec_for(sk_bundle, profile=PROFILES["production"]))[0]
    break_it(deployment)
    with pytest.raises(InvalidInput, match="is not valid Kubernetes") as info:
        validate_documents([deployment])
    assert needle in str(info.value)


def test_the_kserve_schema_catches_a_bad_canary_and_a_typo(sk_bundle) -> None:
    from keel.deploy import kserve

    isvc = kserve.manifest(spec_for(sk_bundle, target="kserve", profile=PROFILES["production"]))
    bad = yaml.safe_load(yaml.safe_dump(isvc))
    bad["spec"]["predictor"]["canaryTrafficPercent"] = 150
    with pytest.raises(InvalidInput, match="canaryTrafficPercent"):
        validate_documents([bad])
    typo = yaml.safe_load(yaml.safe_dump(isvc))
    typo["spec"]["predictor"]["minReplica"] = 1
    with pytest.raises(InvalidInput, match="minReplica"):
        validate_documents([typo])
    pod_error = yaml.safe_load(yaml.safe_dump(isvc))
    pod_error["spec"]["predictor"]["containers"][0]["ports"][0]["containerPort"] = "http"
    with pytest.raises(InvalidInput, match="containerPort"):
        validate_documents([pod_error])


@pytest.mark.parametrize("target", ["local", "systemd", "docker", "edge"])
def test_gpu_on_a_target_without_one_is_refused(target, sk_bundle) -> None:
    from keel.deploy.base import get_target

    spec = spec_for(sk_bundle, target=target, profile=PROFILES["gpu"])
    with pytest.raises(InvalidInput, match=rf"asks for gpu = 2, but the {target} target cannot provision a GPU"):
        get_target(target).check(spec)


def test_docker_context_is_complete(sk_bundle, tmp_path) -> None:
    from keel.deploy.base import get_target
    from keel.deploy.files import write_plan
    from keel.envs.lock import EnvironmentLock

    target = get_target("docker")
    spec = target.prepare(spec_for(sk_bundle, target="docker", model_uri=str(sk_bundle)))
    out = tmp_path / "ctx"
    write_plan(target.plan(spec), out)
    dockerfile = (out / "Dockerfile").read_text()
    assert "FROM python:3." in dockerfile and "-slim" in dockerfile
    assert "USER 10001:10001" in dockerfile
    assert "HEALTHCHECK" in dockerfile and "/v2/health/live" in dockerfile
    assert 'ENTRYPOINT ["python", "-m", "keel.cli.main", "serve", "churn=/app/bundle"]' in dockerfile
    lock = EnvironmentLock.from_text((out / "requirements.lock").read_text())
    model_lock = EnvironmentLock.from_text((sk_bundle / "requirements.lock").read_text())
    assert {"uvicorn", "scikit-learn", "skops"} <= set(lock.packages) and "keel" not in lock.packages
    assert all(lock.packages[k] == v for k, v in model_lock.packages.items())
    assert (out / "vendor/keel/cli/main.py").is_file() and not list(out.rglob("__pycache__"))
    # A profile's env value is kept literally: Docker would otherwise substitute $NAME in it.
    literal = dataclasses.replace(spec, profile=load_profiles({"dev": {"env": {"GREETING": "costs $5"}}})["dev"])
    assert 'ENV GREETING="costs \\$5"' in target.plan(literal).files["Dockerfile"].decode()


def test_systemd_unit_runs_unprivileged_and_restarts(sk_bundle, tmp_path) -> None:
    from keel.deploy import systemd
    from keel.deploy.base import get_target

    spec = spec_for(sk_bundle, target="systemd", profile=PROFILES["production"])
    unit = systemd.unit(spec)
    assert "User=keel" in unit and "Restart=on-failure" in unit and "NoNewPrivileges=true" in unit
    assert "CPUQuota=400%" in unit and f"MemoryMax={4 * 2**30}" in unit
    assert "ExecStart=/opt/keel/churn-v3/venv/bin/python -m keel.cli.main serve churn=/opt/keel/churn-v3/bundle" \
        in unit
    env = systemd.env_file(spec)
    assert 'OMP_NUM_THREADS="2"' in env and 'PYTHONPATH="/opt/keel/churn-v3/vendor"' in env
    bad = dataclasses.replace(spec, options={"install_dir": "/opt/../etc"})
    with pytest.raises(InvalidInput, match="--install-dir"):
        get_target("systemd").check(bad)


@pytest.mark.parametrize("profiles, target, needle", [
    ({"production": {"memory": "lots"}}, "kubernetes", r"\[profiles.production\] memory must be bytes"),
    ({"production": {"cpu": "1", "gpu": 1}}, "docker", "cannot provision a GPU"),
    ({"production": {"cpu": "1", "gpu": 1}}, "local", "deploy with --target kubernetes, kserve"),
])
def test_a_bad_profile_or_impossible_gpu_fails_before_anything_is_written(profiles, target, needle, sk_bundle,
                                                                          tmp_path) -> None:
    from keel.service.context import Context
    from keel.service.deployments import deploy, list_deployments
    from keel.settings import Settings

    home = tmp_path / "home"
    settings = Settings.load({"home": home, "user": "alice", "profiles": profiles}, env={}, cwd=tmp_path)
    ctx = Context.from_settings(settings)
    try:
        with pytest.raises(InvalidInput, match=needle):
            deploy(ctx, str(sk_bundle), target=target, stage="production", out=tmp_path / "out")
        assert not (tmp_path / "out").exists() and not (home / "deployments").exists()
        assert list_deployments(ctx) == []
    finally:
        ctx.close()


def test_keel_toml_profiles_through_the_cli(tmp_path, keel_env) -> None:
    import subprocess
    import sys

    (tmp_path / "keel.toml").write_text('[profiles.production]\ncpu = "2"\nmemory = "512m"\n')
    done = subprocess.run([sys.executable, "-m", "keel.cli.main", "deployments", "profiles"], env=keel_env,
                          cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    assert done.stderr.strip() == ("error: keel.toml [profiles.production] memory must be bytes with a binary "
                                   "suffix (\"512Mi\", \"4Gi\"), a decimal suffix (\"1G\", \"500M\"), plain bytes "
                                   "(1073741824) or an exponent (\"1e9\"); got '512m' (a lower-case 'm' is a "
                                   "fraction of a byte; did you mean 512Mi?)")


def test_the_projects_serve_table_travels_to_every_deployed_server(sk_bundle, tmp_path) -> None:
    """A deployed server does not run beside keel.toml: [serve] auth and limits become flags."""
    from keel.deploy import kubernetes, local, systemd
    from keel.errors import ConfigError
    from keel.settings import Settings

    settings = Settings.load({"home": tmp_path / "home", "serve": {"auth": True, "max_queue": 32,
                                                                  "log_predictions": False}}, env={})
    wanted = ["--max-queue", "32", "--no-log-predictions", "--auth"]
    spec = spec_for(sk_bundle, settings=settings)
    container = kubernetes.manifests(spec)[0]["spec"]["template"]["spec"]["containers"][0]
    assert container["args"][-4:] == wanted
    assert " ".join(wanted) in systemd.unit(dataclasses.replace(spec, target="systemd"))
    assert local.command(dataclasses.replace(spec, target="local"))[-4:] == wanted

    bad = Settings.load({"home": tmp_path / "home", "serve": {"max_queue": 0}}, env={})
    with pytest.raises(ConfigError, match="max_queue must be an integer >= 1"):
        kubernetes.manifests(spec_for(sk_bundle, settings=bad))
