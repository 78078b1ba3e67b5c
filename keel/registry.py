"""The model registry and its governance, from Python.

    import keel
    mv = keel.log_model(clf, "model", input_example=X[:5], register="churn")
    req = keel.registry.request_promotion("churn", mv.version, alias="production")
    keel.registry.approve(req.id, comment="AUC holds on the holdout")   # by another user

Every function takes ``settings=`` to point at another store or actor (the
default: environment and keel.toml, as for runs). Roles and four eyes are
enforced by the service layer underneath, the same one the CLI uses.
"""

from __future__ import annotations

from typing import Any

from keel.service import promotions as _promotions
from keel.service import registry as _registry
from keel.service.promotions import PromotionRequest
from keel.service.registry import ModelVersion, RegisteredModel
from keel.settings import Settings

__all__ = [
    "ModelVersion", "PromotionRequest", "RegisteredModel", "approve", "cancel", "delete_alias", "get_card",
    "explain", "explain_rows", "get_request", "get_version", "lineage", "list_models", "list_requests",
    "list_versions", "reject", "request_promotion", "set_alias", "update_card", "update_model",
]


def _ctx(settings: Settings | None):
    from keel.tracking.fluent import client_for

    return client_for(settings).ctx


def get_version(name: str, version: int | None = None, *, alias: str | None = None,
                settings: Settings | None = None) -> ModelVersion:
    """A registered version by number or alias (or by a ``models:/`` URI as ``name``)."""
    if name.startswith("models:/"):
        return _registry.resolve_uri(_ctx(settings), name)
    return _registry.get_version(_ctx(settings), name, version, alias=alias)


def list_models(*, settings: Settings | None = None) -> list[RegisteredModel]:
    return _registry.list_models(_ctx(settings))


def list_versions(name: str, *, settings: Settings | None = None) -> list[ModelVersion]:
    return _registry.list_versions(_ctx(settings), name)


def update_model(name: str, *, description: str | None = None, tags: dict[str, str] | None = None,
                 delete_tags: list[str] | tuple[str, ...] = (), settings: Settings | None = None) -> RegisteredModel:
    """Change a registered model's description and tags."""
    return _registry.update_model(_ctx(settings), name, description=description, tags=tags, delete_tags=delete_tags)


def set_alias(name: str, alias: str, version: int, *, settings: Settings | None = None) -> ModelVersion:
    """Move an unprotected alias (protected ones need :func:`request_promotion`)."""
    return _registry.set_alias(_ctx(settings), name, alias, version)


def delete_alias(name: str, alias: str, *, settings: Settings | None = None) -> None:
    _registry.delete_alias(_ctx(settings), name, alias)


def request_promotion(name: str, version: int, alias: str, *, comment: str | None = None,
                      settings: Settings | None = None) -> PromotionRequest:
    """Ask for ``version`` to take ``alias``; the policy checks run now and are recorded."""
    return _promotions.request_promotion(_ctx(settings), name, int(version), alias, comment=comment)


def approve(request_id: str, reason: str | None = None, *, comment: str | None = None,
            settings: Settings | None = None) -> PromotionRequest:
    """Approve a pending request (approver role, not its requester); the alias moves."""
    return _promotions.approve(_ctx(settings), request_id, reason if reason is not None else comment)


def reject(request_id: str, reason: str | None = None, *, comment: str | None = None,
           settings: Settings | None = None) -> PromotionRequest:
    """Reject a pending request; the alias stays where it was."""
    return _promotions.reject(_ctx(settings), request_id, reason if reason is not None else comment)


def cancel(request_id: str, reason: str | None = None, *, settings: Settings | None = None) -> PromotionRequest:
    return _promotions.cancel(_ctx(settings), request_id, reason)


def get_request(request_id: str, *, settings: Settings | None = None) -> PromotionRequest:
    return _promotions.get_request(_ctx(settings), request_id)


def list_requests(name: str | None = None, *, status: str | None = None,
                  settings: Settings | None = None) -> list[PromotionRequest]:
    return _promotions.list_requests(_ctx(settings), name=name, status=status)


def update_card(name: str, version: int | None = None, *, settings: Settings | None = None,
                **fields: Any) -> Any:
    """Write the user-authored fields of a model card (purpose, intended use, limitations, ...).

    Without ``version`` the fields are the model's own; a version's fields
    override them for that version. A field set to None is removed.
    """
    from keel.service.cards import update_card as update

    return update(_ctx(settings), name, version, **fields)


def get_card(uri: str, *, settings: Settings | None = None) -> dict[str, Any]:
    """The model card of a version as a dict (the JSON form of `keel card`)."""
    from keel.service.cards import build_card

    return build_card(_ctx(settings), uri)


def explain(uri: str, data: Any, *, target: str | None = None, n_repeats: int = 5, store: bool = True,
            settings: Settings | None = None, **options: Any) -> dict[str, Any]:
    """Global feature importance of a registered version on ``data`` (a file or a frame).

    Permutation importance always; tree SHAP too for tree models. Stored with
    the version (and shown in its card) unless ``store=False``. See
    docs/explanations.md for the document's shape and ``options``.
    """
    from keel.service.explanations import explain_version

    return explain_version(_ctx(settings), uri, data, target=target, n_repeats=n_repeats, store=store, **options)


def evaluate_fairness(uri: str, data: Any, *, sensitive: str, target: str | None = None,
                      limits: dict[str, float] | None = None, store: bool = True,
                      settings: Settings | None = None, **options: Any) -> dict[str, Any]:
    """Fairness of a registered version on ``data`` across ``sensitive``'s groups, kept with the version.

    A promotion policy's ``fairness`` limits judge the newest such evaluation
    (see docs/governance.md); the model card shows it.
    """
    from keel.service.fairness_eval import evaluate_version

    return evaluate_version(_ctx(settings), uri, data, sensitive=sensitive, target=target, limits=limits,
                            store=store, **options)


def explain_rows(model_or_uri: Any, X: Any, *, settings: Settings | None = None, **options: Any) -> dict[str, Any]:
    """Per-row explanations (tree SHAP for tree models, else substitution against a background)."""
    from keel.service.explanations import explain_rows as rows

    return rows(model_or_uri, X, settings=settings, **options)


def lineage(uri: str, *, direction: str = "both", depth: int | None = None,
            settings: Settings | None = None) -> Any:
    """The lineage graph around ``uri`` (models:/, runs:/, datasets:/): see docs/lineage.md."""
    from keel.service.lineage import build_graph

    return build_graph(_ctx(settings), uri, direction=direction, depth=depth)
