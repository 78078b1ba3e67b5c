"""Alert delivery: an HTTP POST of the window's JSON result to a webhook, and a log line.

Delivery happens after the result is committed, so a webhook that is down
never loses a result; what the delivery got (``200``, ``error: ...``) is
recorded with the result and in the audit trail. The payload is the stored
result itself, so a receiver (a chat bridge, an incident tool, a retraining
trigger) sees every number behind the alert.
"""

from __future__ import annotations

import json
import logging
import time
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from keel.errors import InvalidInput

__all__ = ["check_webhook_url", "post_webhook"]

log = logging.getLogger("keel.monitoring.alerts")
_ATTEMPTS = 3
_TIMEOUT_S = 5.0


def check_webhook_url(url: str) -> str:
    """``url`` if it is an absolute http(s) URL with a host; InvalidInput naming the problem otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InvalidInput(f"webhook must be an http:// or https:// URL with a host, got {url!r}")
    return url


def post_webhook(url: str, payload: dict[str, Any], *, attempts: int = _ATTEMPTS, timeout: float = _TIMEOUT_S,
                 backoff: float = 0.5) -> str:
    """POST ``payload`` as JSON; retry on network errors and 5xx. Returns ``"200"`` or ``"error: ..."``."""
    body = json.dumps(payload, separators=(",", ":"), allow_nan=False).encode()
    request = urllib.request.Request(url, data=body, method="POST",
                                     headers={"Content-Type": "application/json", "User-Agent": "keel-monitor"})
    outcome = "error: not sent"
    for attempt in range(attempts):
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310 (scheme checked)
                return str(response.status)
        except urllib.error.HTTPError as exc:
            outcome = f"error: HTTP {exc.code}"
            if exc.code < 500:
                break  # the receiver refused this payload; sending it again will not help
        except (urllib.error.URLError, OSError) as exc:
            outcome = f"error: {getattr(exc, 'reason', exc)}"
        if attempt + 1 < attempts:
            time.sleep(backoff * 2 ** attempt)
    log.warning("keel: webhook %s failed: %s", url, outcome)
    return outcome
