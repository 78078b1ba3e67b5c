"""Resource profiles per stage, declared once in keel.toml and checked when read.

::

    [profiles.production]
    cpu = "2"                 # Kubernetes quantity: "2", "0.5", "500m"
    memory = "4Gi"            # "512Mi", "4Gi", "1G", "1e9" (bytes)
    gpu = 1
    gpu_type = "nvidia-l4"
    replicas = 3
    min_replicas = 2
    max_replicas = 10
    target_cpu_utilization = 70
    canary_traffic_percent = 10
    node_selector = { pool = "inference" }
    tolerations = [{ key = "gpu", operator = "Exists", effect = "NoSchedule" }]
    env = { OMP_NUM_THREADS = "2" }

Everything here is pure: plain mappings in, frozen :class:`Profile` out, or an
:class:`~keel.errors.InvalidInput` naming the profile, the field and the
allowed forms. A bad memory string must fail on the laptop, not an hour later
as a pod that never schedules.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Mapping

from keel.errors import InvalidInput

_NUMBER = r"(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+)"
_QUANTITY = re.compile(rf"^(?P<num>{_NUMBER})(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]+)?$")
_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {"n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"), "": Decimal(1),
            "k": Decimal("1e3"), "M": Decimal("1e6"), "G": Decimal("1e9"), "T": Decimal("1e12"),
            "P": Decimal("1e15"), "E": Decimal("1e18")}
CPU_FORMS = 'a number of cores ("2", "0.5", 1.5) or millicores ("500m")'
MEMORY_FORMS = ('bytes with a binary suffix ("512Mi", "4Gi"), a decimal suffix ("1G", "500M"), '
                'plain bytes (1073741824) or an exponent ("1e9")')
_LABEL = re.compile(r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
                    r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_STAGE = re.compile(r"^[a-z0-9]([-a-z0-9_]{0,62}[a-z0-9])?$")
_TOLERATION_KEYS = {"key", "operator", "value", "effect", "toleration_seconds"}
_EFFECTS = {"NoSchedule", "PreferNoSchedule", "NoExecute"}


@dataclass(frozen=True)
class Profile:
    """The resources one stage asks for. Quantities are kept as written (canonical strings)."""

    stage: str = "default"
    cpu: str | None = None
    memory: str | None = None
    cpu_limit: str | None = None
    memory_limit: str | None = None
    gpu: int = 0
    gpu_type: str | None = None
    replicas: int = 1
    min_replicas: int | None = None
    max_replicas: int | None = None
    target_cpu_utilization: int = 80
    canary_traffic_percent: int | None = None
    node_selector: dict[str, str] = field(default_factory=dict)
    tolerations: tuple[dict[str, Any], ...] = ()
    env: dict[str, str] = field(default_factory=dict)

    @property
    def autoscaled(self) -> bool:
        """True when the profile gives a replica range to scale within."""
        return self.max_replicas is not None and self.max_replicas > (self.min_replicas or self.replicas)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["tolerations"] = [dict(t) for t in self.tolerations]
        return data


def parse_quantity(value: Any, *, what: str, forms: str) -> Decimal:
    """The numeric value of a Kubernetes quantity (in base units), or InvalidInput naming ``what``."""
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise InvalidInput(f"{what} must be {forms}; got {value!r}")
    text = str(value).strip()
    match = _QUANTITY.match(text)
    if not match:
        raise InvalidInput(f"{what} must be {forms}; got {value!r}")
    suffix = match["suffix"] or ""
    try:
        number = Decimal(match["num"])
        if suffix in _BINARY:
            result = number * _BINARY[suffix]
        elif suffix[:1] in ("e", "E"):
            result = number * Decimal(10) ** int(suffix[1:])
        else:
            result = number * _DECIMAL[suffix]
    except (InvalidOperation, ValueError):
        raise InvalidInput(f"{what} must be {forms}; got {value!r}") from None
    if result <= 0:
        raise InvalidInput(f"{what} must be more than zero; got {value!r}")
    return result


def cpu_millicores(value: Any, *, what: str = "cpu") -> int:
    """CPU quantity in millicores; only cores and millicores are accepted (as Kubernetes writes them)."""
    text = str(value).strip() if isinstance(value, (str, int, float)) and not isinstance(value, bool) else None
    if text is None or not re.match(rf"^{_NUMBER}m?$", text):
        raise InvalidInput(f"{what} must be {CPU_FORMS}; got {value!r}")
    cores = parse_quantity(text, what=what, forms=CPU_FORMS)
    millis = cores * 1000
    if millis != millis.to_integral_value():
        raise InvalidInput(f"{what} must be a whole number of millicores (Kubernetes' finest unit); got {value!r}")
    return int(millis)


def memory_bytes(value: Any, *, what: str = "memory") -> int:
    """Memory quantity in bytes. "512m" is refused: it means 0.512 bytes, not megabytes."""
    text = str(value).strip() if isinstance(value, (str, int, float)) and not isinstance(value, bool) else ""
    if text.endswith(("m", "n", "u")):
        raise InvalidInput(f"{what} must be {MEMORY_FORMS}; got {value!r} (a lower-case "
                           f"'{text[-1:]}' is a fraction of a byte; did you mean {text[:-1]}Mi?)")
    amount = parse_quantity(value, what=what, forms=MEMORY_FORMS)
    if amount != amount.to_integral_value():
        raise InvalidInput(f"{what} must be a whole number of bytes; got {value!r}")
    return int(amount)


def load_profiles(table: Mapping[str, Any]) -> dict[str, Profile]:
    """Every profile of keel.toml's ``[profiles]`` table, each one checked (the first error raises)."""
    if not isinstance(table, Mapping):
        raise InvalidInput(f"keel.toml: [profiles] must be a table of stages, got {table!r}")
    return {stage: parse_profile(stage, spec) for stage, spec in table.items()}


def profile_for(table: Mapping[str, Any], stage: str | None) -> Profile:
    """The profile of ``stage`` (every declared profile is checked first); None: the defaults."""
    profiles = load_profiles(table)
    if stage is None:
        return Profile()
    check_stage(stage)
    if stage not in profiles:
        declared = ", ".join(sorted(profiles)) or "none"
        raise InvalidInput(f"no resource profile for stage {stage!r}: add [profiles.{stage}] to keel.toml "
                           f"(declared: {declared}), or deploy without --stage for the defaults")
    return profiles[stage]


def check_stage(stage: Any) -> str:
    if not isinstance(stage, str) or not _STAGE.match(stage):
        raise InvalidInput(f"stage must be lower-case letters, digits, '-' or '_' (at most 64), got {stage!r}")
    return stage


def parse_profile(stage: str, spec: Any) -> Profile:
    """One ``[profiles.STAGE]`` table as a :class:`Profile`."""
    check_stage(stage)
    where = f"keel.toml [profiles.{stage}]"
    if not isinstance(spec, Mapping):
        raise InvalidInput(f"{where} must be a table, got {spec!r}")
    known = {f for f in Profile.__dataclass_fields__} - {"stage"}
    unknown = sorted(set(spec) - known)
    if unknown:
        raise InvalidInput(f"{where}: unknown field(s) {', '.join(unknown)}; allowed: {', '.join(sorted(known))}")
    values: dict[str, Any] = {"stage": stage}
    for name in ("cpu", "cpu_limit"):
        if spec.get(name) is not None:
            cpu_millicores(spec[name], what=f"{where} {name}")
            values[name] = str(spec[name]).strip()
    for name in ("memory", "memory_limit"):
        if spec.get(name) is not None:
            memory_bytes(spec[name], what=f"{where} {name}")
            values[name] = str(spec[name]).strip()
    for low, high, name in ((0, 64, "gpu"), (0, 1000, "replicas"), (0, 1000, "min_replicas"),
                            (1, 1000, "max_replicas"), (1, 100, "target_cpu_utilization"),
                            (0, 100, "canary_traffic_percent")):
        if spec.get(name) is not None:
            values[name] = _integer(spec[name], low, high, f"{where} {name}")
    if spec.get("gpu_type") is not None:
        values["gpu_type"] = _label_value(spec["gpu_type"], f"{where} gpu_type")
        if not values.get("gpu"):
            raise InvalidInput(f"{where}: gpu_type is set but gpu is 0; set gpu = 1 (or more) or drop gpu_type")
    values["node_selector"] = _labels(spec.get("node_selector", {}), f"{where} node_selector")
    values["env"] = _env(spec.get("env", {}), f"{where} env")
    values["tolerations"] = tuple(_toleration(t, f"{where} tolerations[{i}]")
                                  for i, t in enumerate(_list(spec.get("tolerations", []), f"{where} tolerations")))
    profile = Profile(**values)
    _check_limits(profile, where)
    lowest = profile.min_replicas if profile.min_replicas is not None else profile.replicas
    if profile.max_replicas is not None and profile.max_replicas < lowest:
        raise InvalidInput(f"{where}: max_replicas ({profile.max_replicas}) is below min_replicas/replicas "
                           f"({lowest})")
    return profile


def _check_limits(profile: Profile, where: str) -> None:
    if profile.cpu and profile.cpu_limit and cpu_millicores(profile.cpu_limit) < cpu_millicores(profile.cpu):
        raise InvalidInput(f"{where}: cpu_limit ({profile.cpu_limit}) is below the cpu request ({profile.cpu})")
    if profile.memory and profile.memory_limit and memory_bytes(profile.memory_limit) < memory_bytes(profile.memory):
        raise InvalidInput(f"{where}: memory_limit ({profile.memory_limit}) is below the memory request "
                           f"({profile.memory})")


def _integer(value: Any, low: int, high: int, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidInput(f"{what} must be a whole number from {low} to {high}; got {value!r}")
    return value


def _list(value: Any, what: str) -> list[Any]:
    if not isinstance(value, (list, tuple)):
        raise InvalidInput(f"{what} must be a list of tables, got {value!r}")
    return list(value)


def _label_value(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _LABEL_VALUE.match(value):
        raise InvalidInput(f"{what} must be a Kubernetes label value (letters, digits, '-', '_', '.', at most 63), "
                           f"got {value!r}")
    return value


def _labels(value: Any, what: str) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise InvalidInput(f"{what} must be a table of label = value, got {value!r}")
    for key, item in value.items():
        if not isinstance(key, str) or not _LABEL.match(key) or len(key) > 253:
            raise InvalidInput(f"{what}: {key!r} is not a Kubernetes label key (e.g. 'pool' or 'example.com/pool')")
        _label_value(item, f"{what}.{key}")
    return dict(sorted(value.items()))


def _env(value: Any, what: str) -> dict[str, str]:
    if not isinstance(value, Mapping):
        raise InvalidInput(f"{what} must be a table of NAME = \"value\", got {value!r}")
    result = {}
    for key, item in value.items():
        if not isinstance(key, str) or not _ENV_NAME.match(key):
            raise InvalidInput(f"{what}: {key!r} is not an environment variable name (letters, digits, '_')")
        if isinstance(item, bool) or not isinstance(item, (str, int, float)):
            raise InvalidInput(f"{what}.{key} must be a string or number, got {item!r}")
        text = str(item)
        if "\n" in text or "\x00" in text:
            raise InvalidInput(f"{what}.{key} must be one line")
        result[key] = text
    return dict(sorted(result.items()))


def _toleration(value: Any, what: str) -> dict[str, Any]:
    if not isinstance(value, Mapping):
        raise InvalidInput(f"{what} must be a table (key, operator, value, effect), got {value!r}")
    unknown = sorted(set(value) - _TOLERATION_KEYS)
    if unknown:
        raise InvalidInput(f"{what}: unknown field(s) {', '.join(unknown)}; allowed: "
                           f"{', '.join(sorted(_TOLERATION_KEYS))}")
    operator = value.get("operator", "Equal")
    if operator not in ("Equal", "Exists"):
        raise InvalidInput(f"{what}.operator must be 'Equal' or 'Exists', got {operator!r}")
    if operator == "Exists" and value.get("value") not in (None, ""):
        raise InvalidInput(f"{what}: operator 'Exists' takes no value")
    if "effect" in value and value["effect"] not in _EFFECTS:
        raise InvalidInput(f"{what}.effect must be one of {', '.join(sorted(_EFFECTS))}, got {value['effect']!r}")
    result: dict[str, Any] = {}
    if "key" in value:
        result["key"] = _label_key(value["key"], f"{what}.key")
    result["operator"] = operator
    if value.get("value") not in (None, ""):
        result["value"] = _label_value(value["value"], f"{what}.value")
    if "effect" in value:
        result["effect"] = value["effect"]
    if "toleration_seconds" in value:
        result["tolerationSeconds"] = _integer(value["toleration_seconds"], 0, 10**9, f"{what}.toleration_seconds")
    return result


def _label_key(value: Any, what: str) -> str:
    if not isinstance(value, str) or not _LABEL.match(value):
        raise InvalidInput(f"{what} must be a Kubernetes label key, got {value!r}")
    return value
