"""How to install this very keel into an environment built for a model."""

from __future__ import annotations

import json
from importlib import metadata
from urllib.parse import unquote, urlparse


def keel_requirement() -> str:
    """A pip requirement for the running keel: its source folder if installed from one, else keel==VERSION."""
    dist = metadata.distribution("keel")
    direct = dist.read_text("direct_url.json")
    if direct:
        url = json.loads(direct).get("url", "")
        if url.startswith("file://"):
            return unquote(urlparse(url).path)
    return f"keel=={dist.version}"
