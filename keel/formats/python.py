"""Custom Python models: any object with ``predict``, with its source captured.

The object is pickled, because there is no other general way to keep an
arbitrary object's state. The source file of its class (and any extra
``code_paths``) is copied into the bundle and put on ``sys.path`` at load, so
the model loads where that code is not installed. The pickle is loaded only
when its sha256 matches one recorded by keel's store (see bundle.check_pickles).
"""

from __future__ import annotations

import inspect
import pickle
import shutil
import sys
from pathlib import Path
from typing import Any

from keel.errors import InvalidInput
from keel.formats.base import MethodPredictor, Saved

FILE = "model.pkl"
CODE = "code"


class PythonFormat:
    name = "python"
    version = 1

    def matches(self, model: Any) -> bool:
        return callable(getattr(model, "predict", None)) and not isinstance(model, type)

    def save(self, model: Any, folder: Path) -> Saved:
        cls = type(model)
        if cls.__module__ == "__main__":
            raise InvalidInput(
                f"custom model class {cls.__qualname__} is defined in the script being run (__main__); move it "
                "into a module (a .py file you import) so keel can capture its source and load it elsewhere")
        source = inspect.getsourcefile(cls)
        if source is None:
            raise InvalidInput(f"cannot find the source file of {cls.__module__}.{cls.__qualname__}")
        (folder / CODE).mkdir()
        module_path = cls.__module__.replace(".", "/")
        dest = folder / CODE / (module_path + ".py")
        if Path(source).name == "__init__.py":
            dest = folder / CODE / module_path / "__init__.py"
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, dest)
        for parent in dest.parent.relative_to(folder / CODE).parents:  # make intermediate packages importable
            init = folder / CODE / parent / "__init__.py"
            if parent != Path(".") and not init.exists():
                init.write_text("")
        with open(folder / FILE, "wb") as fh:
            pickle.dump(model, fh, protocol=pickle.HIGHEST_PROTOCOL)
        code = sorted(p.relative_to(folder).as_posix() for p in (folder / CODE).rglob("*.py"))
        return Saved(files=[FILE], modules=["numpy"], pickles=[FILE], code=code,
                     meta={"class": f"{cls.__module__}.{cls.__qualname__}"})

    def wrap(self, model: Any, saved: Saved) -> MethodPredictor:
        return MethodPredictor(model, None)  # None: a DataFrame for a columnar signature

    def load(self, folder: Path, saved: Saved) -> MethodPredictor:
        code = str(folder / CODE)
        if code not in sys.path:
            sys.path.insert(0, code)  # the captured source wins over whatever is installed
        with open(folder / FILE, "rb") as fh:
            model = pickle.load(fh)  # the bundle checked this file's hash against the store first
        return MethodPredictor(model, None)  # None: a DataFrame for a columnar signature
