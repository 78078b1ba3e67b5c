"""The public surface is explicit, and importing keel stays light."""

from __future__ import annotations

import subprocess
import sys

import keel

EXPECTED = {
    "ActiveRun", "Client", "KeelError", "Settings", "__version__", "active_run", "end_run", "flush",
    "get_run", "log_artifact", "log_artifacts", "log_dataset", "log_dict", "log_metric", "log_metrics",
    "log_param", "log_params", "log_text", "search_runs", "set_tag", "set_tags", "start_run",
    "log_model", "save_model", "load_model", "registry", "step", "pipeline",
}


def test_exported_names_are_exactly_the_documented_ones():
    assert set(keel.__all__) == EXPECTED
    for name in keel.__all__:
        assert getattr(keel, name) is not None


def test_import_keel_loads_no_heavy_library():
    code = (
        "import sys, keel\n"
        "heavy = {'sqlalchemy', 'alembic', 'numpy', 'pyarrow', 'pandas', 'sklearn', 'typer', 'rich', 'fsspec'}\n"
        "print(sorted(heavy & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
