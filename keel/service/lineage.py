"""Lineage: the graph from datasets through runs and models to versions and promotions, walked both ways.

The graph is built from what the store already records (run inputs, run
artifacts, registered versions, promotion requests); nothing is written.

Every edge kind is one :class:`Relation`: an upstream node kind, a downstream
node kind, and two small queries, one per direction. The walk knows nothing
about particular kinds: from the start node it follows upstream links only
upstream and downstream links only downstream, so the graph of a version
holds the data it was trained on, not every other run that used that data.
A later kind (deployment, monitor result, retrain run) is one more Relation
that ties it to a kind already here.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable

import sqlalchemy as sa

from keel.errors import InvalidInput, KeelError, NotFound
from keel.service.context import Context
from keel.service.tracking import require_run
from keel.store.schema import (
    artifacts, datasets, experiments, model_aliases, model_versions, promotion_requests, run_inputs, runs,
)

DIRECTIONS = ("both", "up", "down")
URI_FORMS = ("models:/NAME/VERSION, models:/NAME@ALIAS, runs:/RUN_ID, runs:/RUN_ID/PATH, "
             "datasets:/NAME, datasets:/NAME/DIGEST")
_MANIFEST = "keel.yaml"
_MODELS_URI = re.compile(r"^models:/[^/@]+(?:/\d+|@[^/@]+)$")
_RUNS_URI = re.compile(r"^runs:/(?P<run>[^/]+)(?:/(?P<path>.+))?$")
# A digest (sha256:<hex>, or just a prefix of the hex of at least 8 characters) or a dataset id.
_DIGEST_REF = re.compile(r"^(?:sha256:)?(?P<hex>[0-9a-f]{8,64})$")


@dataclass(frozen=True)
class Node:
    """One object of the lineage. ``id`` is its URI where keel has one (``promotion:ID`` otherwise)."""

    id: str
    kind: str
    label: str
    attrs: dict[str, Any] = field(default_factory=dict, compare=False)

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "label": self.label, "attrs": dict(self.attrs)}


@dataclass(frozen=True)
class Edge:
    """``source`` is upstream of ``target`` (e.g. a dataset used by a run)."""

    source: str
    target: str
    kind: str
    attrs: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def key(self) -> tuple:
        return (self.source, self.target, self.kind, tuple(sorted(self.attrs.items())))

    def to_dict(self) -> dict[str, Any]:
        return {"source": self.source, "target": self.target, "kind": self.kind, "attrs": dict(self.attrs)}


# Order of kinds in to_dict(): the order of the loop, data first.
KIND_ORDER = ("dataset_name", "dataset", "run", "model", "version", "promotion", "gate", "deployment",
              "monitor_result")


@dataclass(frozen=True)
class Graph:
    """The lineage around ``root`` (a node id)."""

    root: str
    nodes: dict[str, Node]
    edges: list[Edge]

    def downstream(self, node_id: str) -> list[tuple[Edge, Node]]:
        """The edges leaving ``node_id`` and the nodes they lead to."""
        return [(e, self.nodes[e.target]) for e in _ordered(e for e in self.edges if e.source == node_id)]

    def upstream(self, node_id: str) -> list[tuple[Edge, Node]]:
        """The edges reaching ``node_id`` and the nodes they come from."""
        return [(e, self.nodes[e.source]) for e in _ordered(e for e in self.edges if e.target == node_id)]

    def of_kind(self, kind: str) -> list[Node]:
        return sorted((n for n in self.nodes.values() if n.kind == kind), key=lambda n: n.id)

    def to_dict(self) -> dict[str, Any]:
        """Stable JSON shape: nodes sorted by kind then id, edges by source, target, kind."""
        rank = {k: i for i, k in enumerate(KIND_ORDER)}
        nodes = sorted(self.nodes.values(), key=lambda n: (rank.get(n.kind, len(rank)), n.kind, n.id))
        return {"root": self.root, "nodes": [n.to_dict() for n in nodes],
                "edges": [e.to_dict() for e in _ordered(self.edges)]}


def _ordered(edges: Iterable[Edge]) -> list[Edge]:
    return sorted(edges, key=lambda e: tuple(map(str, e.key)))


Link = tuple[Node, dict[str, Any]]  # a neighbour and the attributes of the edge to it


@dataclass(frozen=True)
class Relation:
    kind: str  # edge kind, e.g. "used_by"
    source: str  # upstream node kind
    target: str  # downstream node kind
    targets: Callable[["_Reader", Node], list[Link]]  # downstream neighbours of a `source` node
    sources: Callable[["_Reader", Node], list[Link]]  # upstream neighbours of a `target` node


@dataclass
class _Reader:
    """One read transaction plus the blob store (for manifests), with the nodes built so far."""

    conn: sa.Connection
    ctx: Context
    built: dict[str, Node] = field(default_factory=dict)

    def rows(self, query: Any) -> list[Any]:
        return list(self.conn.execute(query))


def build_graph(ctx: Context, uri: str, *, direction: str = "both", depth: int | None = None) -> Graph:
    """The lineage graph around the object ``uri`` names.

    Args:
        uri: ``models:/NAME/VERSION``, ``models:/NAME@ALIAS``, ``runs:/RUN_ID``,
            ``runs:/RUN_ID/PATH`` (a logged model), ``datasets:/NAME`` (every digest
            logged under that name) or ``datasets:/NAME/DIGEST`` (a digest, a prefix of
            at least 8 hex characters, or the dataset id).
        direction: ``both``, ``up`` (towards the data) or ``down`` (towards promotions).
        depth: at most this many edges from the start node on each side (None: no limit).

    Raises:
        InvalidInput: a malformed URI, direction or depth.
        NotFound: the URI names nothing in the store.
    """
    ctx.authorize("viewer", what="read lineage")
    if direction not in DIRECTIONS:
        raise InvalidInput(f"direction must be one of {', '.join(DIRECTIONS)}, got {direction!r}")
    if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int) or depth < 0):
        raise InvalidInput(f"depth must be a whole number >= 0 (or None for no limit), got {depth!r}")
    version = _resolve_version(ctx, uri) if isinstance(uri, str) and uri.startswith("models:") else None
    with ctx.store.read() as conn:
        reader = _Reader(conn, ctx)
        root = _version_node(reader, *version) if version else _resolve(reader, uri)
        graph = Graph(root.id, {root.id: root}, [])
        for side in ("up", "down"):
            if direction in (side, "both"):
                _walk(reader, graph, root, side, depth)
    return graph


def _walk(reader: _Reader, graph: Graph, root: Node, side: str, depth: int | None) -> None:
    """Breadth-first from ``root``, on one side only, at most ``depth`` edges deep."""
    seen, frontier, level = {root.id}, [root], 0
    known = {e.key for e in graph.edges}
    while frontier and (depth is None or level < depth):
        level += 1
        following = []
        for node in frontier:
            for neighbour, edge in _links(reader, node, side):
                if edge.key not in known:
                    known.add(edge.key)
                    graph.edges.append(edge)
                graph.nodes.setdefault(neighbour.id, neighbour)
                if neighbour.id not in seen:
                    seen.add(neighbour.id)
                    following.append(neighbour)
        frontier = following


def _links(reader: _Reader, node: Node, side: str) -> list[tuple[Node, Edge]]:
    found = []
    for rel in RELATIONS:
        if side == "down" and rel.source == node.kind:
            found += [(n, Edge(node.id, n.id, rel.kind, attrs)) for n, attrs in rel.targets(reader, node)]
        elif side == "up" and rel.target == node.kind:
            found += [(n, Edge(n.id, node.id, rel.kind, attrs)) for n, attrs in rel.sources(reader, node)]
    return found


# --------------------------------------------------------------------------
# Start URIs
# --------------------------------------------------------------------------
def _bad_uri(uri: Any) -> InvalidInput:
    return InvalidInput(f"not a lineage URI: {uri!r}; expected one of {URI_FORMS}")


def _resolve_version(ctx: Context, uri: str) -> tuple[str, int]:
    from keel.service.registry import resolve_uri

    if not _MODELS_URI.match(uri):
        raise _bad_uri(uri)
    found = resolve_uri(ctx, uri)  # its NotFound names the missing model, version or alias
    return found.name, found.version


def _resolve(reader: _Reader, uri: Any) -> Node:
    if not isinstance(uri, str):
        raise _bad_uri(uri)
    match = _RUNS_URI.match(uri)
    if match:
        require_run(reader.conn, match["run"], field="run")
        if not match["path"]:
            return _run_node(reader, match["run"])
        from keel.artifacts.paths import normalize_artifact_path

        path = normalize_artifact_path(match["path"])
        if not _has_manifest(reader, match["run"], path):
            raise NotFound(f"runs:/{match['run']}/{path} is not a logged model (no {_MANIFEST} there)")
        return _model_node(reader, match["run"], path)
    if uri.startswith("datasets:/") and len(uri) > len("datasets:/"):
        return _resolve_dataset(reader, uri[len("datasets:/"):])
    raise _bad_uri(uri)


def _resolve_dataset(reader: _Reader, rest: str) -> Node:
    # Names may hold "/", so the last segment is a digest only if it looks like one
    # and what comes before it is a dataset name.
    head, _, last = rest.rpartition("/")
    ref = _DIGEST_REF.match(last.lower()) if head else None
    if ref and _name_exists(reader, head):
        rows = reader.rows(sa.select(datasets).where(datasets.c.name == head, sa.or_(
            datasets.c.id == last.lower(), datasets.c.digest.startswith(f"sha256:{ref['hex']}")))
            .order_by(datasets.c.digest))
        if not rows:
            raise NotFound(f"dataset {head!r} has no digest starting with {last!r} "
                           f"(see `keel lineage datasets:/{head}` for its digests)")
        if len(rows) > 1:
            raise InvalidInput(f"{last!r} matches {len(rows)} digests of dataset {head!r}; give more characters")
        return _dataset_node(rows[0])
    if _name_exists(reader, rest):
        return _dataset_name_node(reader, rest)
    if head and _name_exists(reader, head):
        raise InvalidInput(f"{last!r} is not a digest of dataset {head!r}: give its digest (sha256:...), "
                           "a prefix of at least 8 hex characters, or the dataset id")
    raise NotFound(f"no dataset named {rest!r} has been logged")


def _name_exists(reader: _Reader, name: str) -> bool:
    return bool(reader.rows(sa.select(datasets.c.id).where(datasets.c.name == name).limit(1)))


def _has_manifest(reader: _Reader, run_id: str, path: str) -> bool:
    return bool(reader.rows(sa.select(artifacts.c.sha256).where(
        artifacts.c.run_id == run_id, artifacts.c.path == f"{path}/{_MANIFEST}")))


# --------------------------------------------------------------------------
# Nodes: one builder per kind; ``label`` is the one-line summary the CLI prints
# --------------------------------------------------------------------------
def _dataset_name_node(reader: _Reader, name: str) -> Node:
    count = len(reader.rows(sa.select(datasets.c.id).where(datasets.c.name == name)))
    return Node(f"datasets:/{name}", "dataset_name", f"{count} digest{'s' * (count != 1)}",
                {"name": name, "digests": count})


def _dataset_node(row: Any) -> Node:
    attrs = {"dataset_id": row.id, "name": row.name, "digest": row.digest, "source": row.source,
             "num_rows": row.num_rows, "created_at": row.created_at}
    label = f"{row.num_rows} rows" + (f", from {row.source}" if row.source else "")
    return Node(f"datasets:/{row.name}/{row.digest}", "dataset", label, attrs)


def _run_node(reader: _Reader, run_id: str) -> Node:
    if f"runs:/{run_id}" in reader.built:
        return reader.built[f"runs:/{run_id}"]
    [row] = reader.rows(sa.select(runs, experiments.c.name.label("experiment"))
                        .join(experiments, experiments.c.id == runs.c.experiment_id).where(runs.c.id == run_id))
    attrs = {"run_id": row.id, "name": row.name, "experiment": row.experiment, "status": row.status,
             "user": row.user, "source_commit": row.source_commit, "source_dirty": row.source_dirty,
             "entry_point": row.entry_point, "parent_run_id": row.parent_run_id,
             "start_time": row.start_time, "end_time": row.end_time}
    commit = (row.source_commit or "-")[:12] + (" (dirty)" if row.source_dirty else "")
    label = f"{row.name} in {row.experiment}, {row.status}, by {row.user}, commit {commit}, " \
            f"entry {row.entry_point or '-'}"
    return reader.built.setdefault(f"runs:/{run_id}", Node(f"runs:/{run_id}", "run", label, attrs))


def _model_node(reader: _Reader, run_id: str, path: str) -> Node:
    node_id = f"runs:/{run_id}/{path}"
    if node_id not in reader.built:
        attrs = {"run_id": run_id, "path": path, **_model_summary(reader, run_id, path)}
        if attrs.get("problem"):
            label = f"manifest unreadable: {attrs['problem']}"
        else:
            env = attrs["environment"]
            label = f"{attrs['format']}, Python {env['python'] or '?'}, {env['packages']} pinned packages"
        reader.built[node_id] = Node(node_id, "model", label, attrs)
    return reader.built[node_id]


def _model_summary(reader: _Reader, run_id: str, path: str) -> dict[str, Any]:
    """Format, manifest hash and environment from the bundle's keel.yaml and requirements.lock.

    An unreadable bundle (missing or corrupt blob) is reported on the node,
    not raised: the rest of the lineage is still worth showing.
    """
    import yaml

    from keel.envs.lock import EnvironmentLock

    shas = dict(reader.rows(sa.select(artifacts.c.path, artifacts.c.sha256).where(
        artifacts.c.run_id == run_id, artifacts.c.path.startswith(f"{path}/", autoescape=True))))
    manifest_sha = shas.get(f"{path}/{_MANIFEST}")
    summary: dict[str, Any] = {"manifest_sha256": manifest_sha, "format": None, "environment": None}
    if manifest_sha is None:
        return {**summary, "problem": f"no {_MANIFEST} recorded"}
    try:
        manifest = yaml.safe_load(reader.ctx.blobs.get_bytes(manifest_sha, name=f"runs:/{run_id}/{path}/{_MANIFEST}"))
        if not isinstance(manifest, dict):
            raise InvalidInput(f"{_MANIFEST} is not a mapping")
        env = manifest.get("environment") or {}
        lock_path = f"{path}/{env.get('lock') or 'requirements.lock'}"
        packages = None
        if lock_path in shas:
            text = reader.ctx.blobs.get_bytes(shas[lock_path], name=f"runs:/{run_id}/{lock_path}")
            packages = len(EnvironmentLock.from_text(text.decode("utf-8")).packages)
        summary.update(format=manifest.get("format"), environment={
            "python": env.get("python"), "platform": env.get("platform"), "packages": packages,
            "source_commit": env.get("source_commit")})
    except (KeelError, OSError, yaml.YAMLError, UnicodeDecodeError) as exc:
        summary["problem"] = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return summary


def _version_node(reader: _Reader, name: str, version: int) -> Node:
    node_id = f"models:/{name}/{version}"
    if node_id not in reader.built:
        [row] = reader.rows(sa.select(model_versions).where(
            model_versions.c.name == name, model_versions.c.version == version))
        aliases = [a for (a,) in reader.rows(sa.select(model_aliases.c.alias).where(
            model_aliases.c.name == name, model_aliases.c.version == version).order_by(model_aliases.c.alias))]
        attrs = {"name": name, "version": version, "aliases": aliases, "format": row.format,
                 "manifest_sha256": row.manifest_sha256, "created_by": row.created_by, "created_at": row.created_at}
        label = f"registered by {row.created_by}" + (f", aliases: {', '.join(aliases)}" if aliases else "")
        reader.built[node_id] = Node(node_id, "version", label, attrs)
    return reader.built[node_id]


def _promotion_node(row: Any) -> Node:
    attrs = {"request_id": row.id, "name": row.name, "version": row.version, "alias": row.alias,
             "status": row.status, "requester": row.requester, "requested_at": row.requested_at,
             "decided_by": row.decided_by, "decided_at": row.decided_at, "reason": row.reason}
    label = f"to {row.alias}: {row.status}, requested by {row.requester}"
    if row.decided_by:
        label += f", {row.status} by {row.decided_by}" if row.status in ("approved", "rejected") \
            else f", decided by {row.decided_by}"
    return Node(f"promotion:{row.id}", "promotion", label, attrs)


# --------------------------------------------------------------------------
# Relations: one per edge kind, each with its downstream and upstream query
# --------------------------------------------------------------------------
def _runs_using(reader: _Reader, node: Node) -> list[Link]:
    rows = reader.rows(sa.select(run_inputs.c.run_id, run_inputs.c.context).where(
        run_inputs.c.dataset_id == node.attrs["dataset_id"]).order_by(run_inputs.c.run_id, run_inputs.c.context))
    return [(_run_node(reader, r.run_id), {"context": r.context}) for r in rows]


def _datasets_used(reader: _Reader, node: Node) -> list[Link]:
    rows = reader.rows(sa.select(datasets, run_inputs.c.context)
                       .join(run_inputs, run_inputs.c.dataset_id == datasets.c.id)
                       .where(run_inputs.c.run_id == node.attrs["run_id"])
                       .order_by(datasets.c.name, datasets.c.digest, run_inputs.c.context))
    return [(_dataset_node(r), {"context": r.context}) for r in rows]


def _digests_of(reader: _Reader, node: Node) -> list[Link]:
    rows = reader.rows(sa.select(datasets).where(datasets.c.name == node.attrs["name"])
                       .order_by(datasets.c.created_at, datasets.c.digest))
    return [(_dataset_node(r), {}) for r in rows]


def _no_links(reader: _Reader, node: Node) -> list[Link]:
    return []  # a dataset name groups digests as a start point; it is not a step of any run's lineage


def _children(reader: _Reader, node: Node) -> list[Link]:
    rows = reader.rows(sa.select(runs.c.id).where(runs.c.parent_run_id == node.attrs["run_id"]).order_by(runs.c.id))
    return [(_run_node(reader, r.id), {}) for r in rows]


def _parent(reader: _Reader, node: Node) -> list[Link]:
    parent = node.attrs["parent_run_id"]
    return [(_run_node(reader, parent), {})] if parent else []


def _models_logged(reader: _Reader, node: Node) -> list[Link]:
    run_id = node.attrs["run_id"]
    rows = reader.rows(sa.select(artifacts.c.path).where(
        artifacts.c.run_id == run_id, artifacts.c.path.endswith(f"/{_MANIFEST}")).order_by(artifacts.c.path))
    return [(_model_node(reader, run_id, r.path[: -len(_MANIFEST) - 1]), {}) for r in rows]


def _logging_run(reader: _Reader, node: Node) -> list[Link]:
    return [(_run_node(reader, node.attrs["run_id"]), {})]


def _versions_of(reader: _Reader, node: Node) -> list[Link]:
    rows = reader.rows(sa.select(model_versions.c.name, model_versions.c.version).where(
        model_versions.c.run_id == node.attrs["run_id"], model_versions.c.artifact_path == node.attrs["path"])
        .order_by(model_versions.c.name, model_versions.c.version))
    return [(_version_node(reader, r.name, r.version), {}) for r in rows]


def _model_of(reader: _Reader, node: Node) -> list[Link]:
    [row] = reader.rows(sa.select(model_versions.c.run_id, model_versions.c.artifact_path).where(
        model_versions.c.name == node.attrs["name"], model_versions.c.version == node.attrs["version"]))
    return [(_model_node(reader, row.run_id, row.artifact_path), {})]


def _promotions_of(reader: _Reader, node: Node) -> list[Link]:
    rows = reader.rows(sa.select(promotion_requests).where(
        promotion_requests.c.name == node.attrs["name"], promotion_requests.c.version == node.attrs["version"])
        .order_by(promotion_requests.c.requested_at, promotion_requests.c.id))
    return [(_promotion_node(r), {}) for r in rows]


def _version_promoted(reader: _Reader, node: Node) -> list[Link]:
    return [(_version_node(reader, node.attrs["name"], node.attrs["version"]), {})]


RELATIONS: tuple[Relation, ...] = (
    Relation("has_digest", "dataset_name", "dataset", _digests_of, _no_links),
    Relation("used_by", "dataset", "run", _runs_using, _datasets_used),
    Relation("parent_of", "run", "run", _children, _parent),
    Relation("logged", "run", "model", _models_logged, _logging_run),
    Relation("registered_as", "model", "version", _versions_of, _model_of),
    Relation("requested", "version", "promotion", _promotions_of, _version_promoted),
)

# The operating side of the loop (deployments, monitor results, gate
# decisions, retrain runs) lives in its own module; it builds nodes with the
# functions above, so it is imported once they exist.
from keel.service.lineage_ops import OPERATING_RELATIONS  # noqa: E402

RELATIONS = RELATIONS + OPERATING_RELATIONS
