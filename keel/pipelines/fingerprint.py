"""What a step's cache key covers: its code, the project code it uses, its
inputs, its parameters and the environment.

Code: the step function's own source, the source of every function and
class of its module that it reaches through its globals, the top-level
assignments of the module-level constants it reaches (``THRESHOLD = 0.5``),
and the whole file
of every *project* module it uses (imported as a module, or a function or
class taken from one), with the project modules those files import, all
the way down. A project module is a file under the project root that is not
an installed package (site-packages, the keel library itself); installed
packages are covered by the environment lock instead. Files are named by
their path relative to the root, so a replay from recorded sources in
another folder gets the same keys.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.util
import inspect
import json
import sys
import textwrap
import types
from pathlib import Path
from typing import Any, Iterable, Mapping

KEY_VERSION = 2  # bump when what the key covers changes: old cache entries then miss


def sha256_text(text: str | bytes) -> str:
    return hashlib.sha256(text.encode() if isinstance(text, str) else text).hexdigest()


class Project:
    """Which files count as project code, and their sources (read once per run)."""

    def __init__(self, root: Path) -> None:
        self.root = root.resolve()
        excluded = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
        keel_dir = Path(__file__).resolve().parents[1]
        self._excluded = [p for p in excluded if p != self.root and not _within(self.root, p)] + [keel_dir]
        self._files: dict[Path, bytes] = {}

    def owns(self, file: str | None) -> Path | None:
        """The resolved path of ``file`` if it is project code, else None."""
        if not file or not file.endswith(".py"):
            return None
        path = Path(file).resolve()
        if not _within(path, self.root) or "site-packages" in path.parts or "dist-packages" in path.parts:
            return None
        if any(_within(path, p) for p in self._excluded):
            return None
        return path

    def relative(self, path: Path) -> str:
        return path.relative_to(self.root).as_posix()

    def source(self, path: Path) -> bytes:
        data = self._files.get(path)
        if data is None:
            data = self._files[path] = path.read_bytes()
        return data

    def module_name(self, path: Path) -> str | None:
        """The name ``path`` was imported under, if it was (for its relative imports)."""
        for name, module in list(sys.modules.items()):
            file = getattr(module, "__file__", None)
            if file and file.endswith(path.name) and Path(file).resolve() == path:
                return name
        return None

    def module_file(self, module: types.ModuleType | None) -> Path | None:
        return self.owns(getattr(module, "__file__", None)) if module is not None else None

    def imported_files(self, path: Path, module_name: str | None) -> list[Path]:
        """Project files that ``path`` imports (absolute and relative imports)."""
        try:
            tree = ast.parse(self.source(path), filename=str(path))
        except SyntaxError:
            return []
        package = _package_of(module_name or self.module_name(path), path)
        found: list[Path] = []
        for node in ast.walk(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    base = _resolve_relative(package, node.level, base)
                    if base is None:
                        continue
                names = [base] + [f"{base}.{a.name}" if base else a.name for a in node.names if a.name != "*"]
            for name in names:
                file = self.owns(_origin(name))
                if file is not None and file != path:
                    found.append(file)
        return sorted(set(found))


def code_fingerprint(fn: Any, project: Project) -> dict[str, str]:
    """label -> sha256 of every piece of code that ``fn`` depends on (see the module docstring)."""
    parts: dict[str, str] = {}
    seen: set[int] = set()
    modules: set[Path] = set()

    def visit_module_file(path: Path, name: str | None) -> None:
        if path in modules:
            return
        modules.add(path)
        parts[f"module:{project.relative(path)}"] = sha256_text(project.source(path))
        for imported in project.imported_files(path, name):
            visit_module_file(imported, None)

    def visit(obj: Any, home: Path | None) -> None:
        obj = getattr(obj, "fn", obj) if type(obj).__name__ in ("Step", "Pipeline") else obj
        if id(obj) in seen:
            return
        if isinstance(obj, types.ModuleType):
            path = project.module_file(obj)
            if path is not None:
                seen.add(id(obj))
                visit_module_file(path, obj.__name__)
            return
        if not (inspect.isfunction(obj) or inspect.isclass(obj)):
            return
        module = sys.modules.get(getattr(obj, "__module__", None) or "")
        path = project.module_file(module)
        if path is None:
            return
        seen.add(id(obj))
        if path != home:  # another project module: the whole file, and what it imports
            visit_module_file(path, module.__name__)
            return
        # Same file as the step: just this definition, then what it refers to.
        parts[f"def:{project.relative(path)}:{obj.__qualname__}"] = sha256_text(_source(obj))
        functions = [obj] if inspect.isfunction(obj) else [
            v for v in vars(obj).values() if inspect.isfunction(v)]
        for f in functions:
            for name in _referenced_names(f.__code__):
                if name in f.__globals__:
                    value = f.__globals__[name]
                    if _is_code(value):
                        visit(value, home)
                    else:  # a module-level constant: the statements that assign it
                        parts[f"global:{project.relative(home)}:{name}"] = sha256_text(
                            _assignments(project.source(home), name) or _plain_repr(value))
            for cell in f.__closure__ or ():
                try:
                    visit(cell.cell_contents, home)
                except ValueError:  # an empty cell
                    pass

    fn = getattr(fn, "fn", fn)
    module = sys.modules.get(fn.__module__)
    home = project.module_file(module)
    if home is None:  # a step defined outside the project (a library's): its source is all we have
        parts[f"def:{fn.__module__}:{fn.__qualname__}"] = sha256_text(_source(fn))
    else:
        visit(fn, home)
    return dict(sorted(parts.items()))


def project_files(entry: Path, project: Project, module_name: str | None = None) -> list[Path]:
    """The entry file and every project file it imports, transitively (what a replay needs)."""
    found: list[Path] = []
    queue = [(entry.resolve(), module_name)]
    while queue:
        path, name = queue.pop()
        if path in found:
            continue
        found.append(path)
        queue += [(p, None) for p in project.imported_files(path, name)]
    return sorted(found)


def cache_key(*, step: str, code: Mapping[str, str], inputs: Mapping[str, Any], params: Mapping[str, Any],
              env: str, outputs: int) -> str:
    """The sha256 of everything a step's outputs depend on."""
    payload = {"v": KEY_VERSION, "step": step, "code": dict(code), "inputs": dict(inputs),
               "params": dict(params), "env": env, "outputs": outputs}
    return sha256_text(json.dumps(payload, sort_keys=True, separators=(",", ":")))


def _is_code(value: Any) -> bool:
    obj = getattr(value, "fn", value) if type(value).__name__ in ("Step", "Pipeline") else value
    return isinstance(obj, types.ModuleType) or inspect.isfunction(obj) or inspect.isclass(obj) \
        or inspect.isbuiltin(obj) or callable(obj)


def _assignments(data: bytes, name: str) -> str:
    """The source of every top-level statement of a module's source that assigns ``name`` (in order)."""
    source = data.decode("utf-8", "replace")
    found = []
    for node in _tree(source).body:
        targets: list[ast.expr] = []
        if isinstance(node, ast.Assign):
            targets = node.targets
        elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
            targets = [node.target]
        names = {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
        if name in names:
            found.append(ast.get_source_segment(source, node) or "")
    return "\n".join(found)


@functools.lru_cache(maxsize=64)
def _tree(source: str) -> ast.Module:
    return ast.parse(source)


def _plain_repr(value: Any) -> str:
    """A stable text of a plain value not assigned at top level (a loop, an import); type only otherwise."""
    plain = (type(None), bool, int, float, str, bytes, tuple, list, dict, set, frozenset)
    return repr(value) if isinstance(value, plain) else f"<{type(value).__module__}.{type(value).__qualname__}>"


def _referenced_names(code: types.CodeType) -> Iterable[str]:
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, types.CodeType):  # nested functions, comprehensions, lambdas
            yield from _referenced_names(const)


def _source(obj: Any) -> str:
    try:
        return textwrap.dedent(inspect.getsource(obj))
    except (OSError, TypeError):  # defined in a REPL: fall back to the bytecode
        code = getattr(obj, "__code__", None)
        return repr(code.co_code) + repr(code.co_consts) if code else repr(obj)


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _origin(name: str) -> str | None:
    module = sys.modules.get(name)
    if module is not None:
        return getattr(module, "__file__", None)
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError, AttributeError):
        return None
    return spec.origin if spec is not None else None


def _package_of(module_name: str | None, path: Path) -> str | None:
    if module_name is None:
        return None
    return module_name if path.name == "__init__.py" else module_name.rpartition(".")[0]


def _resolve_relative(package: str | None, level: int, base: str) -> str | None:
    if not package:
        return None
    parts = package.split(".")
    if level - 1 > len(parts) - 1:
        return None
    head = ".".join(parts[: len(parts) - (level - 1)])
    return f"{head}.{base}" if base else head
