"""``@keel.step`` and ``@keel.pipeline``: plain Python, traced into a graph.

Calling a step inside a pipeline function does not run it: it adds a node to
the graph being traced and returns handles to its outputs, which the
pipeline passes on to other steps. Outside a pipeline a step is the plain
function it decorates (handy in notebooks and unit tests).

Example::

    @keel.step
    def load(path):
        return pd.read_csv(path)

    @keel.step(resources={"cpus": 2, "memory": "4GiB"})
    def train(frame, C: float):
        ...

    @keel.pipeline(datasets=["data"])
    def churn(data="churn.csv", C=1.0):
        return train(load(data), C=C)
"""

from __future__ import annotations

import functools
import inspect
import re
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping

from keel.errors import InvalidInput

_tracing: ContextVar["Graph | None"] = ContextVar("keel_pipeline_graph", default=None)
_UNITS = {"": 1, "b": 1, "k": 1 << 10, "kb": 1000, "kib": 1 << 10, "m": 1 << 20, "mb": 1000 ** 2,
          "mib": 1 << 20, "g": 1 << 30, "gb": 1000 ** 3, "gib": 1 << 30, "t": 1 << 40, "tib": 1 << 40}


@dataclass(frozen=True)
class Resources:
    """What a step asks of the machine it runs on.

    Attributes:
        cpus: CPU cores (a Ray request; the subprocess executor schedules by it
            and caps BLAS/OpenMP threads to it).
        gpus: GPUs (a Ray request; a local executor refuses a step needing one it lacks).
        memory: bytes of memory (a Ray request; the subprocess executor sets it as the
            process's address-space limit, so the step fails instead of the machine).
        timeout_s: wall-clock seconds before the step is stopped (subprocess, Ray).
    """

    cpus: float = 1.0
    gpus: float = 0.0
    memory: int | None = None
    timeout_s: float | None = None

    @classmethod
    def parse(cls, spec: "Resources | Mapping[str, Any] | None", where: str) -> "Resources":
        if spec is None:
            return cls()
        if isinstance(spec, Resources):
            return spec
        if not isinstance(spec, Mapping):
            raise InvalidInput(f"{where}: resources must be a dict such as {{'cpus': 2, 'memory': '4GiB'}}, "
                               f"got {spec!r}")
        unknown = set(spec) - {"cpus", "gpus", "memory", "timeout_s"}
        if unknown:
            raise InvalidInput(f"{where}: unknown resource(s) {sorted(unknown)}; expected cpus, gpus, memory, "
                               "timeout_s")
        cpus, gpus = _number(spec.get("cpus", 1.0), "cpus", where), _number(spec.get("gpus", 0.0), "gpus", where)
        timeout = spec.get("timeout_s")
        memory = spec.get("memory")
        return cls(cpus, gpus, None if memory is None else parse_bytes(memory, f"{where}: memory"),
                   None if timeout is None else _number(timeout, "timeout_s", where))

    def to_dict(self) -> dict[str, Any]:
        return {"cpus": self.cpus, "gpus": self.gpus, "memory": self.memory, "timeout_s": self.timeout_s}


def _number(value: Any, name: str, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise InvalidInput(f"{where}: resources[{name!r}] must be a number >= 0, got {value!r}")
    return float(value)


def parse_bytes(value: Any, where: str) -> int:
    """``4096``, ``"512MiB"``, ``"4GB"`` -> bytes."""
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([A-Za-z]*)\s*", str(value))
    if not match or match[2].lower() not in _UNITS or float(match[1]) <= 0:
        raise InvalidInput(f"{where} must be a byte count such as 2147483648, '512MiB' or '4GB', got {value!r}")
    return int(float(match[1]) * _UNITS[match[2].lower()])


_STEP_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,127}$")


class Step:
    """A decorated step function. Called in a pipeline: a graph node; elsewhere: the function."""

    def __init__(self, fn: Callable[..., Any], *, name: str | None = None, outputs: int = 1,
                 resources: Resources | Mapping[str, Any] | None = None, cache: bool = True) -> None:
        if not callable(fn) or inspect.isclass(fn):
            raise InvalidInput(f"@keel.step decorates a function, got {fn!r}")
        if not isinstance(outputs, int) or isinstance(outputs, bool) or outputs < 1:
            raise InvalidInput(f"@keel.step({fn.__name__}): outputs must be an int >= 1, got {outputs!r}")
        self.fn = fn
        self.name = name or fn.__name__
        if not _STEP_NAME.match(self.name):  # it names child runs, cache rows and temp folders
            raise InvalidInput(f"@keel.step name must be letters, digits, '_', '.' or '-' (starting with a letter "
                               f"or '_'), at most 128 characters; got {self.name!r}")
        self.outputs = outputs
        self.resources = Resources.parse(resources, f"step {self.name!r}")
        self.cache = bool(cache)
        self.signature = inspect.signature(fn)
        functools.update_wrapper(self, fn)

    def __repr__(self) -> str:
        return f"<keel step {self.name}>"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        graph = _tracing.get()
        if graph is None:
            return self.fn(*args, **kwargs)
        try:
            bound = self.signature.bind(*args, **kwargs)
        except TypeError as exc:
            raise InvalidInput(f"step {self.name!r} called with the wrong arguments: {exc}") from None
        node = graph.add(self, dict(bound.arguments))
        handles = tuple(Output(node.id, i) for i in range(self.outputs))
        return handles[0] if self.outputs == 1 else handles


@dataclass(frozen=True)
class Output:
    """A handle to one output of a step in a traced pipeline; pass it to other steps."""

    node: str
    index: int = 0

    def __bool__(self) -> bool:
        raise InvalidInput(f"the output of step {self.node!r} is a handle while the pipeline is traced: pass it "
                           "to another step and use its value there (branching on it belongs in a step)")

    def __iter__(self):
        raise InvalidInput(f"the output of step {self.node!r} is one handle; to return several values declare "
                           "@keel.step(outputs=N) and unpack the call")


@dataclass(frozen=True)
class DataInput:
    """A handle to a dataset parameter of the pipeline (a file, replaced by ``keel retrain --data``)."""

    name: str


@dataclass
class Node:
    id: str
    step: Step
    arguments: dict[str, Any]  # parameter name -> Output / DataInput / plain value

    def upstream(self) -> list[str]:
        return sorted({a.node for a in _handles(self.arguments.values()) if isinstance(a, Output)})

    def datasets(self) -> list[str]:
        return sorted({a.name for a in _handles(self.arguments.values()) if isinstance(a, DataInput)})


def _handles(values: Iterable[Any]) -> Iterable[Any]:
    """Handles in argument values, also inside lists, tuples and dicts."""
    for value in values:
        if isinstance(value, (Output, DataInput)):
            yield value
        elif isinstance(value, (list, tuple)):
            yield from _handles(value)
        elif isinstance(value, dict):
            yield from _handles(value.values())


@dataclass
class Graph:
    nodes: dict[str, Node] = field(default_factory=dict)  # in call order: a valid topological order
    result: Any = None

    def add(self, step: Step, arguments: dict[str, Any]) -> Node:
        for handle in _handles(arguments.values()):
            if isinstance(handle, Output) and handle.node not in self.nodes:
                raise InvalidInput(f"step {step.name!r} got an output of step {handle.node!r} from another "
                                   "pipeline trace")
        node_id, n = step.name, 1
        while node_id in self.nodes:  # the same step called twice: train, train_2, ...
            n += 1
            node_id = f"{step.name}_{n}"
        node = self.nodes[node_id] = Node(node_id, step, arguments)
        return node

    def downstream_of(self, node_id: str) -> set[str]:
        found, frontier = set(), {node_id}
        while frontier:
            frontier = {n.id for n in self.nodes.values() if set(n.upstream()) & frontier} - found
            found |= frontier
        return found


class Pipeline:
    """A decorated pipeline function: its keyword parameters are the pipeline's parameters."""

    def __init__(self, fn: Callable[..., Any], *, name: str | None = None, datasets: Iterable[str] = (),
                 experiment: str | None = None) -> None:
        self.fn = fn
        self.name = name or fn.__name__
        if not _STEP_NAME.match(self.name):  # it names the pipeline's experiment and its runs
            raise InvalidInput(f"@keel.pipeline name must be letters, digits, '_', '.' or '-' (starting with a "
                               f"letter or '_'), at most 128 characters; got {self.name!r}")
        self.experiment = experiment or self.name
        self.signature = inspect.signature(fn)
        self.datasets = tuple(datasets)
        for ds in self.datasets:
            if ds not in self.signature.parameters:
                raise InvalidInput(f"pipeline {self.name!r}: dataset {ds!r} is not a parameter of "
                                   f"{fn.__name__}{self.signature}")
        functools.update_wrapper(self, fn)

    def __repr__(self) -> str:
        return f"<keel pipeline {self.name}>"

    def defaults(self) -> dict[str, Any]:
        return {k: p.default for k, p in self.signature.parameters.items() if p.default is not inspect.Parameter.empty}

    def resolve_params(self, given: Mapping[str, Any]) -> dict[str, Any]:
        """Defaults overridden by ``given``; every parameter must end up with a value."""
        unknown = set(given) - set(self.signature.parameters)
        if unknown:
            raise InvalidInput(f"pipeline {self.name!r} has no parameter(s) {sorted(unknown)}; its parameters: "
                               f"{', '.join(self.signature.parameters) or 'none'}")
        params = {**self.defaults(), **given}
        missing = [k for k in self.signature.parameters if k not in params]
        if missing:
            raise InvalidInput(f"pipeline {self.name!r} needs a value for {', '.join(missing)} "
                               "(pass --param NAME=VALUE)")
        return params

    def trace(self, params: Mapping[str, Any]) -> Graph:
        """Build the graph for these parameters (dataset parameters become handles)."""
        graph = Graph()
        token = _tracing.set(graph)
        try:
            call = {k: DataInput(k) if k in self.datasets else v for k, v in params.items()}
            graph.result = self.fn(**call)
        finally:
            _tracing.reset(token)
        if not graph.nodes:
            raise InvalidInput(f"pipeline {self.name!r} called no @keel.step function")
        return graph

    def run(self, *, executor: str = "inprocess", cache: bool = True, settings: Any = None,
            **params: Any) -> Any:
        """Run the pipeline now, tracked; returns a :class:`keel.pipelines.runner.PipelineRun`."""
        from keel.pipelines.runner import run_pipeline

        return run_pipeline(self, params, executor=executor, cache=cache, settings=settings)

    def __call__(self, **params: Any) -> Any:
        return self.run(**params)


def step(fn: Callable[..., Any] | None = None, *, name: str | None = None, outputs: int = 1,
         resources: Resources | Mapping[str, Any] | None = None, cache: bool = True) -> Any:
    """Make a function a pipeline step.

    Args:
        name: step name (default: the function's name).
        outputs: how many values the function returns (a tuple of that length when > 1).
        resources: ``{"cpus": 2, "gpus": 0, "memory": "4GiB", "timeout_s": 600}``.
        cache: reuse outputs when the cache key matches (False: always rerun).
    """
    def wrap(f: Callable[..., Any]) -> Step:
        return Step(f, name=name, outputs=outputs, resources=resources, cache=cache)

    return wrap(fn) if fn is not None else wrap


def pipeline(fn: Callable[..., Any] | None = None, *, name: str | None = None, datasets: Iterable[str] = (),
             experiment: str | None = None) -> Any:
    """Make a function a pipeline of steps.

    Args:
        name: pipeline name (default: the function's name).
        datasets: parameters that name data files: their content is hashed into the cache
            keys, stored, and replaced by ``keel retrain --data``.
        experiment: experiment of the pipeline runs (default: the pipeline name).
    """
    def wrap(f: Callable[..., Any]) -> Pipeline:
        return Pipeline(f, name=name, datasets=datasets, experiment=experiment)

    return wrap(fn) if fn is not None else wrap
