"""`keel lineage URI`: where a model, run or dataset came from and what came of it."""

from __future__ import annotations

from typing import TYPE_CHECKING, Callable, Optional

import typer

from keel.cli.common import client_from, out, print_json

if TYPE_CHECKING:
    from rich.text import Text
    from rich.tree import Tree

    from keel.service.lineage import Edge, Graph, Node


def lineage(
    ctx: typer.Context,
    uri: str = typer.Argument(..., help="models:/NAME/VERSION, models:/NAME@ALIAS, runs:/RUN_ID, "
                                        "runs:/RUN_ID/PATH, datasets:/NAME or datasets:/NAME/DIGEST."),
    direction: str = typer.Option("both", "--direction", help="both, up (towards the data) or down."),
    depth: Optional[int] = typer.Option(None, "--depth", help="At most this many steps from URI on each side."),
    as_json: bool = typer.Option(False, "--json", help="Print the graph as JSON (root, nodes, edges)."),
) -> None:
    """Show the lineage around URI: datasets, runs, logged models, versions, promotions."""
    from keel.service.lineage import build_graph

    graph = build_graph(client_from(ctx).ctx, uri, direction=direction, depth=depth)
    if as_json:
        return print_json(graph.to_dict())
    out.print(render_tree(graph, direction))


def render_tree(graph: Graph, direction: str = "both") -> Tree:
    """The start node, then its upstream side and its downstream side, as an indented tree.

    Labels are Text objects, so names and paths that users chose are never
    read as rich markup. A node reached twice on one side is shown once and
    referred to after that.
    """
    from rich.text import Text
    from rich.tree import Tree

    tree = Tree(_line(graph.nodes[graph.root]))
    for title, side, step in (("upstream", "up", graph.upstream), ("downstream", "down", graph.downstream)):
        if direction not in ("both", side):
            continue
        branch = tree.add(Text(title, style="bold"))
        if not step(graph.root):
            branch.add(Text("(nothing recorded)", style="dim"))
        _grow(branch, graph.root, step, {graph.root})
    return tree


def _grow(branch: Tree, node_id: str, step: Callable[[str], list[tuple[Edge, Node]]], shown: set[str]) -> None:
    for edge, node in step(node_id):
        line = _line(node)
        context = f": {edge.attrs['context']}" if edge.attrs.get("context") else ""
        line.append(f"  [{edge.kind}{context}]", style="dim")
        if node.id in shown:
            branch.add(line.append("  (shown above)", style="dim"))
            continue
        shown.add(node.id)
        _grow(branch.add(line), node.id, step, shown)


def _line(node: Node) -> Text:
    from rich.text import Text

    text = Text(node.id, style="bold")
    text.append(f"  {node.kind}", style="cyan")
    return text.append(f"  {node.label}")
