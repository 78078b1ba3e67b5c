"""Input checks shared by the service functions. Messages name the field."""

from __future__ import annotations

import math
import re
from numbers import Real
from typing import Any

from keel.errors import InvalidInput

MAX_KEY_LENGTH = 250
MAX_PARAM_VALUE_LENGTH = 6000
MAX_TAG_VALUE_LENGTH = 8000
MAX_NAME_LENGTH = 256
_KEY = re.compile(r"^[A-Za-z0-9_\-. /:]+$")


def check_key(kind: str, key: Any) -> str:
    """A param, tag or metric key: 1-250 chars of letters, digits, ``_-. /:``."""
    if not isinstance(key, str):
        raise InvalidInput(f"{kind} key must be a string, got {type(key).__name__} {key!r}")
    if not key:
        raise InvalidInput(f"{kind} key must not be empty")
    if len(key) > MAX_KEY_LENGTH:
        raise InvalidInput(
            f"{kind} key {key[:40]!r}... is {len(key)} characters long; at most {MAX_KEY_LENGTH} allowed"
        )
    if not _KEY.match(key):
        raise InvalidInput(
            f"{kind} key {key!r} has characters other than letters, digits, '_', '-', '.', ' ', '/', ':'"
        )
    return key


def check_name(kind: str, name: Any) -> str:
    if not isinstance(name, str) or not name.strip():
        raise InvalidInput(f"{kind} name must be a non-empty string, got {name!r}")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidInput(f"{kind} name is {len(name)} characters long; at most {MAX_NAME_LENGTH} allowed")
    return name


def param_value(key: str, value: Any) -> str:
    """Params are stored as text; the value's str() must fit 6000 characters."""
    text = value if isinstance(value, str) else str(value)
    if len(text) > MAX_PARAM_VALUE_LENGTH:
        raise InvalidInput(
            f"param {key!r} value is {len(text)} characters long; at most {MAX_PARAM_VALUE_LENGTH} allowed"
        )
    return text


def tag_value(key: str, value: Any) -> str:
    text = value if isinstance(value, str) else str(value)
    if len(text) > MAX_TAG_VALUE_LENGTH:
        raise InvalidInput(
            f"tag {key!r} value is {len(text)} characters long; at most {MAX_TAG_VALUE_LENGTH} allowed"
        )
    return text


def metric_value(key: str, value: Any, *, allow_nonfinite: bool) -> float:
    """A real number; NaN/inf only when allowed. bool and str are refused."""
    if type(value) is float:  # fast path: the common case on the hot path
        result = value
    elif isinstance(value, Real) and not isinstance(value, bool):
        result = float(value)
    elif hasattr(value, "item") and getattr(value, "size", 0) == 1:  # numpy / torch scalar
        return metric_value(key, value.item(), allow_nonfinite=allow_nonfinite)
    else:
        raise InvalidInput(f"metric {key!r} value must be a real number, got {type(value).__name__} {value!r}")
    if not allow_nonfinite and not math.isfinite(result):
        raise InvalidInput(
            f"metric {key!r} value is {result}; non-finite values are refused "
            "(KEEL_ALLOW_NONFINITE_METRICS=false)"
        )
    return result


def metric_step(key: str, step: Any) -> int:
    if type(step) is int:
        return step
    if isinstance(step, bool) or not hasattr(step, "__index__"):
        raise InvalidInput(f"metric {key!r} step must be an integer, got {type(step).__name__} {step!r}")
    return int(step.__index__())
