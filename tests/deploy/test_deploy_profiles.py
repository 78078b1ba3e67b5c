"""Resource profiles: quantities checked when declared, errors that name the field and the forms."""

from __future__ import annotations

import pytest

from keel.deploy.profiles import Profile, cpu_millicores, load_profiles, memory_bytes, profile_for
from keel.errors import InvalidInput


@pytest.mark.parametrize("text, expected", [("2", 2000), ("0.5", 500), ("500m", 500), (1.5, 1500), (4, 4000)])
def test_cpu_quantities(text, expected) -> None:
    assert cpu_millicores(text) == expected


@pytest.mark.parametrize("text, expected", [("512Mi", 512 * 2**20), ("4Gi", 4 * 2**30), ("1G", 10**9),
                                            ("1e9", 10**9), (1073741824, 2**30), ("500M", 500 * 10**6)])
def test_memory_quantities(text, expected) -> None:
    assert memory_bytes(text) == expected


@pytest.mark.parametrize("field, value, needle", [
    ("memory", "lots", "memory must be bytes with a binary suffix"),
    ("memory", "512m", "did you mean 512Mi"),
    ("memory", "-1Gi", "memory must be"),
    ("memory", "4GB", "memory must be"),
    ("cpu", "two", "cpu must be a number of cores"),
    ("cpu", "2Gi", "cpu must be a number of cores"),
    ("cpu", "0", "more than zero"),
    ("cpu", "0.0001", "whole number of millicores"),
    ("gpu", -1, "gpu must be a whole number from 0"),
    ("replicas", "3", "replicas must be a whole number"),
    ("target_cpu_utilization", 150, "target_cpu_utilization must be a whole number from 1 to 100"),
])
def test_bad_values_name_the_profile_field_and_forms(field, value, needle) -> None:
    with pytest.raises(InvalidInput) as info:
        load_profiles({"staging": {"cpu": "1", field: value}})
    message = str(info.value)
    assert f"keel.toml [profiles.staging] {field}" in message
    assert needle in message
    assert repr(value) in message


def test_a_full_profile_is_read_as_declared() -> None:
    found = load_profiles({"production": {
        "cpu": "2", "memory": "4Gi", "gpu": 1, "gpu_type": "nvidia-l4", "replicas": 3, "min_replicas": 2,
        "max_replicas": 10, "target_cpu_utilization": 70, "canary_traffic_percent": 10,
        "node_selector": {"pool": "inference"}, "env": {"OMP_NUM_THREADS": 2},
        "tolerations": [{"key": "gpu", "operator": "Exists", "effect": "NoSchedule"}]}})
    p = found["production"]
    assert (p.cpu, p.memory, p.gpu, p.gpu_type, p.replicas, p.min_replicas, p.max_replicas) == \
        ("2", "4Gi", 1, "nvidia-l4", 3, 2, 10)
    assert p.autoscaled and p.env == {"OMP_NUM_THREADS": "2"}
    assert p.tolerations == ({"key": "gpu", "operator": "Exists", "effect": "NoSchedule"},)


@pytest.mark.parametrize("spec, needle", [
    ({"cpu": "1", "memroy": "1Gi"}, "unknown field(s) memroy"),
    ({"gpu_type": "a100"}, "gpu_type is set but gpu is 0"),
    ({"min_replicas": 5, "max_replicas": 2}, "max_replicas (2) is below"),
    ({"memory": "2Gi", "memory_limit": "1Gi"}, "memory_limit (1Gi) is below"),
    ({"node_selector": {"bad key!": "x"}}, "not a Kubernetes label key"),
    ({"env": {"1BAD": "x"}}, "not an environment variable name"),
    ({"tolerations": [{"key": "a", "operator": "Maybe"}]}, "operator must be 'Equal' or 'Exists'"),
])
def test_inconsistent_profiles_are_refused(spec, needle) -> None:
    with pytest.raises(InvalidInput, match=None) as info:
        load_profiles({"dev": spec})
    assert needle in str(info.value)


def test_every_profile_is_checked_even_when_another_stage_is_asked_for() -> None:
    table = {"dev": {"cpu": "1"}, "production": {"memory": "lots"}}
    with pytest.raises(InvalidInput, match=r"\[profiles.production\] memory"):
        profile_for(table, "dev")


def test_undeclared_stage_and_defaults() -> None:
    with pytest.raises(InvalidInput, match=r"no resource profile for stage 'prod'.*declared: dev"):
        profile_for({"dev": {}}, "prod")
    assert profile_for({}, None) == Profile()
