"""Conformance suites that every plug-in of a kind must pass (run in keel's own tests)."""
