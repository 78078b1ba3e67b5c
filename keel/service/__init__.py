"""The service layer: every change of state, its checks and its audit event.

The Python API, the CLI and (later) the REST server call these functions and
nothing else writes to the store. Each function takes a :class:`Context`
(store, blob store, acting user) as its first argument.
"""

from keel.service.context import Context

__all__ = ["Context"]
