"""Pipelines: ``@keel.step`` functions composed in a ``@keel.pipeline``.

- ``dsl``: the decorators and the traced graph (nodes, handles).
- ``fingerprint``: what a step's cache key covers (code, data, params, environment).
- ``values``: how step outputs become content-addressed blobs and back.
- ``executors``: where steps run (in-process, local subprocesses, Ray).
- ``runner``: one pipeline run: cache look-ups, scheduling, tracking.
- ``replay``: the recorded pipeline run again, on new data (``keel retrain``).
"""
