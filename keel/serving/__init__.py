"""Serving: the inference server (Open Inference Protocol), its batcher, metrics and prediction log."""
