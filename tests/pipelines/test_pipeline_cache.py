"""The step cache: what reruns after a change of code, data or parameters, and what does not."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from keel.pipelines.runner import run_file

pytestmark = pytest.mark.store

HELPERS = """
def scale(values):
    return [v * 2 for v in values]
"""

PIPELINE = """
import keel
import helpers
from textfmt import shout


@keel.step
def load(path):
    with open(path) as fh:
        return [float(line) for line in fh if line.strip()]


@keel.step
def transform(values):
    return helpers.scale(values)


@keel.step
def total(values, offset: float):
    return sum(values) + offset


SUFFIX = ""


@keel.step
def describe(label: str):
    return shout(label) + SUFFIX


@keel.pipeline(datasets=["data"])
def numbers(data="data.txt", offset=0.0, label="x"):
    return {"total": total(transform(load(data)), offset=offset), "label": describe(label)}
"""

TEXTFMT = """
def shout(text):
    return text.upper()
"""


@pytest.fixture
def project(tmp_path: Path) -> Path:
    folder = tmp_path / "proj"
    folder.mkdir()
    (folder / "helpers.py").write_text(textwrap.dedent(HELPERS))
    (folder / "textfmt.py").write_text(textwrap.dedent(TEXTFMT))
    (folder / "pipe.py").write_text(textwrap.dedent(PIPELINE))
    (folder / "data.txt").write_text("1\n2\n3\n")
    return folder


def run(project: Path, settings, **params):
    return run_file(project / "pipe.py", {"data": str(project / "data.txt"), **params}, settings=settings)


def test_first_run_runs_every_step_and_a_second_run_reruns_nothing(project, settings):
    first = run(project, settings)
    assert sorted(first.ran) == ["describe", "load", "total", "transform"]
    assert first.value() == {"total": 12.0, "label": "X"}

    second = run(project, settings)
    assert second.ran == []
    assert sorted(second.cached) == ["describe", "load", "total", "transform"]
    assert second.value() == {"total": 12.0, "label": "X"}
    assert second.steps["total"].cached_from == first.steps["total"].run_id


def test_changing_an_imported_helper_reruns_the_step_that_uses_it(project, settings):
    run(project, settings)
    (project / "helpers.py").write_text(HELPERS.replace("v * 2", "v * 3"))

    again = run(project, settings)
    # transform's helper changed; total's input changed with it; load and describe did not.
    assert sorted(again.ran) == ["total", "transform"]
    assert sorted(again.cached) == ["describe", "load"]
    assert again.value()["total"] == 18.0  # the edited helper is the code that ran


def test_a_helper_edit_that_keeps_the_output_stops_the_rerun_at_that_step(project, settings):
    run(project, settings)
    (project / "helpers.py").write_text("# a comment changes the source, not the result\n" + HELPERS)

    again = run(project, settings)
    # outputs are content-addressed: total sees the same input hash and stays cached
    assert again.ran == ["transform"]
    assert again.value()["total"] == 12.0


def test_a_helper_imported_by_name_is_covered_too(project, settings):
    run(project, settings)
    (project / "textfmt.py").write_text(TEXTFMT.replace("text.upper()", "text.upper() + '!'"))

    again = run(project, settings)
    assert again.ran == ["describe"]
    assert again.value()["label"] == "X!"


def test_editing_one_step_reruns_it_and_what_depends_on_it_only(project, settings):
    run(project, settings)
    source = (project / "pipe.py").read_text()
    (project / "pipe.py").write_text(source.replace("return sum(values) + offset", "return sum(values) + offset + 1"))

    again = run(project, settings)
    assert again.ran == ["total"]
    assert again.value()["total"] == 13.0


def test_changing_a_module_level_constant_a_step_uses_reruns_that_step(project, settings):
    run(project, settings)
    source = (project / "pipe.py").read_text()
    (project / "pipe.py").write_text(source.replace('SUFFIX = ""', 'SUFFIX = "?"'))

    again = run(project, settings)
    assert again.ran == ["describe"]
    assert again.value()["label"] == "X?"


def test_changing_the_data_reruns_the_steps_downstream_of_it(project, settings):
    run(project, settings)
    (project / "data.txt").write_text("1\n2\n3\n4\n")

    again = run(project, settings)
    assert sorted(again.ran) == ["load", "total", "transform"]
    assert again.cached == ["describe"]
    assert again.value()["total"] == 20.0


def test_changing_a_parameter_reruns_only_the_steps_that_take_it(project, settings):
    run(project, settings)
    again = run(project, settings, offset=5.0)
    assert again.ran == ["total"]
    assert again.value()["total"] == 17.0


def test_cache_false_reruns_every_step(project, settings):
    run(project, settings)
    again = run_file(project / "pipe.py", {"data": str(project / "data.txt")}, settings=settings, cache=False)
    assert sorted(again.ran) == ["describe", "load", "total", "transform"]
