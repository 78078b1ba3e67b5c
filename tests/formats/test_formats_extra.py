"""The CatBoost and PyTorch plug-ins pass the conformance suite, and their own edge cases."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from keel.errors import InvalidInput
from keel.testing.formats import check_format

# torch 2.13 deprecates torch.jit.*; these tests still call script/trace as a user of TorchScript does.
pytestmark = pytest.mark.filterwarnings(r"ignore:`torch\.jit\.:DeprecationWarning")


def _catboost(kind: str, **params):
    import catboost as cb
    # allow_writing_files=False: no catboost_info/ folder left in the working directory
    return getattr(cb, kind)(iterations=30, depth=4, random_seed=0, verbose=0, allow_writing_files=False, **params)


def test_catboost_classifier_and_regressor(classification, tmp_path):
    X_train, X_test, y_train, _ = classification
    clf = _catboost("CatBoostClassifier").fit(X_train, y_train)
    loaded = check_format(clf, X_test, tmp_path / "clf")
    assert loaded.format == "catboost" and loaded.has_proba and not loaded.signature.columnar
    assert type(loaded.native).__name__ == "CatBoostClassifier"
    reg = _catboost("CatBoostRegressor").fit(X_train, y_train.astype(float))
    assert not check_format(reg, X_test, tmp_path / "reg").has_proba


def test_catboost_with_a_categorical_column_takes_a_frame(frame_data, tmp_path):
    frame, y = frame_data
    labels = np.array(["stay", "churn"])[y]
    model = _catboost("CatBoostClassifier", cat_features=["city"]).fit(frame, labels)
    loaded = check_format(model, frame, tmp_path)
    assert loaded.signature.columnar and loaded.manifest.data["meta"] == {"class": "CatBoostClassifier", "frame": True}
    assert "pandas" in loaded.manifest.data["modules"]
    assert set(loaded.predict(frame.head(20))) <= {"stay", "churn"}  # the labels come back, not 0/1


def test_catboost_unfitted_model_is_refused(tmp_path):
    from keel.formats.api import save_model

    with pytest.raises(InvalidInput, match=r"the CatBoostRegressor is not fitted; call fit\(\) before saving it"):
        save_model(_catboost("CatBoostRegressor"), tmp_path / "m")


# --- PyTorch -----------------------------------------------------------------

@pytest.fixture
def torch_reference():
    import torch

    return torch


def _forward(module, X):
    import torch

    with torch.no_grad():
        return module(torch.as_tensor(np.asarray(X, dtype=np.float32))).numpy()


def _mlp(torch, n_features: int):
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Linear(n_features, 16), torch.nn.ReLU(), torch.nn.Linear(16, 2))


def test_torch_sequential_is_scripted_at_save(classification, tmp_path, torch_reference):
    _, X_test, _, _ = classification
    loaded = check_format(_mlp(torch_reference, X_test.shape[1]), X_test, tmp_path)
    assert loaded.format == "torch" and not loaded.has_proba
    assert loaded.manifest.data["meta"] == {"kind": "module", "dtype": "float32"}
    assert loaded.manifest.files.keys() >= {"model.pt"} and not loaded.manifest.data["pickles"]


def test_torch_script_module_is_saved_as_it_is(classification, tmp_path, torch_reference):
    _, X_test, _, _ = classification
    scripted = torch_reference.jit.script(_mlp(torch_reference, X_test.shape[1]))
    assert check_format(scripted, X_test, tmp_path).manifest.data["meta"]["kind"] == "scripted"


def test_unscriptable_module_says_to_trace_and_the_trace_loads(classification, tmp_path, torch_reference):
    from keel.formats.api import save_model

    torch = torch_reference

    class Net(torch.nn.Module):
        def __init__(self, n: int) -> None:
            super().__init__()
            self.linear = torch.nn.Linear(n, 3)
            self.act = lambda t: t.clamp(min=0)  # a lambda attribute: torch.jit.script cannot compile it

        def forward(self, x):
            return self.act(self.linear(x))

    _, X_test, _, _ = classification
    torch.manual_seed(0)
    model = Net(X_test.shape[1])
    with pytest.raises(InvalidInput, match=r"torch\.jit\.script failed \(Module 'Net' has no attribute 'act'.*"
                                           r"pass the result: save_model\(torch\.jit\.trace\(model, example_input\)"):
        save_model(model, tmp_path / "refused")
    assert not (tmp_path / "refused").exists()
    traced = torch.jit.trace(model, torch.as_tensor(X_test[:4], dtype=torch.float32))
    loaded = check_format(traced, X_test, tmp_path / "traced")
    assert loaded.manifest.data["meta"]["kind"] == "traced"


def test_torch_module_subclass_round_trips_and_keeps_its_training_mode(classification, tmp_path):
    import torch
    from keel.formats.api import load_model, save_model

    class Net(torch.nn.Module):  # defined here, not in torch: detected through its MRO
        def __init__(self, n: int) -> None:
            super().__init__()
            self.body = torch.nn.Sequential(torch.nn.Linear(n, 32), torch.nn.Tanh(), torch.nn.Dropout(0.5))
            self.head = torch.nn.Linear(32, 1)

        def forward(self, x):
            return self.head(self.body(x))

    _, X_test, _, _ = classification
    torch.manual_seed(0)
    model = Net(X_test.shape[1]).train()
    manifest = save_model(model, tmp_path / "net", input_example=X_test[:5])
    assert manifest.format == "torch" and model.training and model.body[2].training  # save left it training
    loaded = load_model(manifest.path)
    expected = _forward(model.eval(), X_test)
    got = loaded.predict(X_test)
    assert got.dtype == np.float32 and got.shape == (len(X_test), 1)
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-6)


def test_float64_module_gets_float64_input(classification, tmp_path):
    import torch
    from keel.formats.api import load_model, save_model

    _, X_test, _, _ = classification
    model = _mlp(torch, X_test.shape[1]).double()
    manifest = save_model(model, tmp_path / "m", input_example=X_test[:5])
    assert manifest.data["meta"]["dtype"] == "float64"
    with torch.no_grad():
        expected = model(torch.as_tensor(X_test)).numpy()
    np.testing.assert_allclose(load_model(manifest.path).predict(X_test), expected, rtol=0, atol=1e-12)


def test_detection_imports_no_model_library_for_a_custom_object():
    code = (
        "import sys\n"
        "from keel.formats.registry import detect_format\n"
        "class Model:\n"
        "    def predict(self, X): return X\n"
        "assert detect_format(Model()).name == 'python'\n"
        "heavy = sorted({'torch', 'catboost'} & set(sys.modules))\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
