"""Tracking: the client, the fluent API, the metric buffer, dataset profiles."""
