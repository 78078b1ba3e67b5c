"""Example projects shipped with keel: the quickstart's training pipeline (``quickstart_pipeline.py``)."""
