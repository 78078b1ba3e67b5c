"""Settings: declared once, resolved flag > env > keel.toml > default."""

from __future__ import annotations

from pathlib import Path

import pytest

from keel.errors import ConfigError
from keel.settings import Settings, describe


def test_defaults_follow_keel_home(tmp_path):
    s = Settings.load(env={"KEEL_HOME": str(tmp_path / "h")}, cwd=tmp_path)
    assert s.home == tmp_path / "h"
    assert s.store_uri == f"sqlite:///{tmp_path / 'h' / 'keel.db'}"
    assert s.artifact_uri == str(tmp_path / "h" / "artifacts")
    assert s.tracking_uri is None and s.allow_nonfinite_metrics is True


def test_precedence_flag_env_toml_default(tmp_path):
    (tmp_path / "keel.toml").write_text('user = "from-toml"\nmetric_buffer_size = 7\nhome = "tomlhome"\n')
    s = Settings.load(env={}, cwd=tmp_path)
    assert (s.user, s.metric_buffer_size, s.home) == ("from-toml", 7, Path("tomlhome"))
    s = Settings.load(env={"KEEL_USER": "from-env"}, cwd=tmp_path)
    assert s.user == "from-env" and s.metric_buffer_size == 7
    s = Settings.load({"user": "from-flag"}, env={"KEEL_USER": "from-env"}, cwd=tmp_path)
    assert s.user == "from-flag"


def test_bad_values_name_the_setting(tmp_path):
    with pytest.raises(ConfigError, match=r"KEEL_METRIC_BUFFER_SIZE\) must be a int: got 'lots'"):
        Settings.load(env={"KEEL_METRIC_BUFFER_SIZE": "lots"}, cwd=tmp_path)
    with pytest.raises(ConfigError, match=r"KEEL_ALLOW_NONFINITE_METRICS\) must be a bool"):
        Settings.load(env={"KEEL_ALLOW_NONFINITE_METRICS": "maybe"}, cwd=tmp_path)
    (tmp_path / "keel.toml").write_text("user = [unclosed")
    with pytest.raises(ConfigError, match="keel.toml: invalid TOML"):
        Settings.load(env={}, cwd=tmp_path)


def test_every_setting_is_documented():
    docs = dict(describe())
    assert set(docs) >= {"KEEL_HOME", "KEEL_STORE_URI", "KEEL_ARTIFACT_URI", "KEEL_TRACKING_URI", "KEEL_TOKEN", "KEEL_USER"}
    assert all(doc for doc in docs.values())
