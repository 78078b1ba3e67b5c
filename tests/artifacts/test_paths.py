"""Logical artifact paths never escape their root."""

from __future__ import annotations

import os

import pytest

from keel.artifacts.paths import normalize_artifact_path, safe_join
from keel.errors import InvalidInput


@pytest.mark.parametrize("path, expected", [
    ("model.pkl", "model.pkl"),
    ("plots/roc.png", "plots/roc.png"),
    ("a//./b/", "a/b"),
    ("./x", "x"),
    ("100%.txt", "100%.txt"),
    ("name with spaces/ü.json", "name with spaces/ü.json"),
])
def test_normal_forms(path, expected):
    assert normalize_artifact_path(path) == expected


@pytest.mark.parametrize("path, reason", [
    ("../etc/passwd", "escapes its root"),
    ("a/../../b", "escapes its root"),
    ("/etc/passwd", "is absolute"),
    ("~/x", "is absolute"),
    ("C:/Windows", "is absolute"),
    ("a\\..\\b", "backslash"),
    ("%2e%2e/secret", "escapes its root with '..' (percent-encoded)"),
    ("%2E%2E%2Fsecret", "escapes its root with '..' (percent-encoded)"),
    ("%252e%252e%252fsecret", "percent-encoded"),
    ("%2Fetc%2Fpasswd", "is absolute (percent-encoded)"),
    ("a/%5C..%5Cb", "backslash (percent-encoded)"),
    ("file:///etc/passwd", "looks like a URL"),
    ("a\x00b", "control character"),
    ("", "must not be empty"),
    ("./.", "names no file"),
    ("x" * 1001, "at most 1000"),
])
def test_escapes_are_refused_with_the_reason(path, reason):
    with pytest.raises(InvalidInput, match=reason.replace("(", r"\(").replace(")", r"\)")):
        normalize_artifact_path(path)


def test_non_string_is_refused():
    with pytest.raises(InvalidInput, match="must be a string"):
        normalize_artifact_path(b"bytes")  # type: ignore[arg-type]


def test_safe_join_stays_inside_and_refuses_symlinked_escape(tmp_path):
    root = tmp_path / "dest"
    root.mkdir()
    assert safe_join(root, "a/b.txt") == (root / "a" / "b.txt").resolve()
    outside = tmp_path / "outside"
    outside.mkdir()
    os.symlink(outside, root / "link")
    with pytest.raises(InvalidInput, match="resolves outside"):
        safe_join(root, "link/file.txt")
