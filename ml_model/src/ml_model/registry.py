"""Model registry: the promotion rule, the ``champion`` alias, manual promote and rollback.

Every decision is written onto the model version (tags and description), so the registry
itself says why each version is or is not the champion, and which version it replaced.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

from ml_model.config import Direction
from ml_model.errors import UserError

CHAMPION = "champion"
TAG_DECISION = "promotion.decision"
TAG_REASON = "promotion.reason"
TAG_METRIC = "promotion.metric"
TAG_CANDIDATE = "promotion.candidate_score"
TAG_CHAMPION = "promotion.champion_score"
TAG_PREVIOUS = "promotion.previous_champion"


@dataclass(frozen=True)
class PromotionDecision:
    promoted: bool
    reason: str
    metric: str
    candidate_score: float | None
    champion_version: str | None = None
    champion_score: float | None = None


def decide(
    metric: str,
    direction: Direction,
    min_improvement: float,
    *,
    candidate_score: float | None,
    champion_version: str | None,
    champion_score: float | None,
    champion_error: str | None = None,
) -> PromotionDecision:
    """Promote when there is no champion yet, or when the candidate beats the champion's score
    on the same held-out data by at least ``min_improvement`` in ``direction``."""

    def verdict(promoted: bool, reason: str) -> PromotionDecision:
        return PromotionDecision(
            promoted, reason, metric, candidate_score, champion_version, champion_score
        )

    if candidate_score is None:
        return verdict(False, f"the candidate has no {metric} on the held-out data")
    if champion_version is None:
        return verdict(True, "first version: no champion yet")
    if champion_error is not None or champion_score is None:
        return verdict(
            False,
            f"champion v{champion_version} could not be scored on this "
            f"run's held-out data ({champion_error}); promote by hand if meant",
        )
    gain = (
        champion_score - candidate_score
        if direction == "minimize"
        else candidate_score - champion_score
    )
    summary = (
        f"{metric} {candidate_score:.6g} vs champion v{champion_version} "
        f"{champion_score:.6g} on the same held-out data ({direction}, "
        f"min improvement {min_improvement:g})"
    )
    if gain > 0 and gain >= min_improvement:
        return verdict(True, f"beats the champion: {summary}")
    return verdict(False, f"does not beat the champion: {summary}")


def champion_version(client: MlflowClient, name: str) -> ModelVersion | None:
    """The version holding the ``champion`` alias, or None (also when the model is new)."""
    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException:
        return None


def record_decision(
    client: MlflowClient, name: str, version: str, decision: PromotionDecision
) -> None:
    """Write the decision onto the version; move the alias when it promotes."""
    tags = {
        TAG_DECISION: "promoted" if decision.promoted else "rejected",
        TAG_REASON: decision.reason,
        TAG_METRIC: decision.metric,
    }
    if decision.candidate_score is not None:
        tags[TAG_CANDIDATE] = repr(decision.candidate_score)
    if decision.champion_score is not None:
        tags[TAG_CHAMPION] = repr(decision.champion_score)
    if decision.promoted and decision.champion_version is not None:
        tags[TAG_PREVIOUS] = decision.champion_version
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)
    verb = "Promoted to champion" if decision.promoted else "Not promoted"
    client.update_model_version(name, version, description=f"{verb}: {decision.reason}")
    if decision.promoted:
        client.set_registered_model_alias(name, CHAMPION, version)


def _existing_version(client: MlflowClient, name: str, version: str) -> ModelVersion:
    try:
        return client.get_model_version(name, version)
    except MlflowException:
        raise UserError(f"model '{name}' has no version {version}") from None


def promote(client: MlflowClient, name: str, version: str) -> str | None:
    """Make ``version`` the champion by hand; returns the version it replaced (if any)."""
    _existing_version(client, name, version)
    previous = champion_version(client, name)
    if previous is not None and previous.version == version:
        raise UserError(f"version {version} of '{name}' is already the champion")
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    client.set_model_version_tag(name, version, TAG_DECISION, "promoted by hand")
    client.set_model_version_tag(name, version, TAG_REASON, f"promoted by hand at {when}")
    if previous is not None:
        client.set_model_version_tag(name, version, TAG_PREVIOUS, previous.version)
    client.set_registered_model_alias(name, CHAMPION, version)
    return previous.version if previous is not None else None


def rollback(client: MlflowClient, name: str) -> tuple[str, str]:
    """Give the alias back to the version the current champion replaced.
    Returns (from_version, to_version)."""
    current = champion_version(client, name)
    if current is None:
        raise UserError(f"model '{name}' has no champion to roll back")
    previous = current.tags.get(TAG_PREVIOUS)
    if not previous:
        raise UserError(f"champion v{current.version} of '{name}' replaced no earlier version")
    _existing_version(client, name, previous)
    when = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    client.set_model_version_tag(name, current.version, TAG_DECISION, "rolled back")
    client.set_model_version_tag(
        name, current.version, TAG_REASON, f"rolled back to v{previous} at {when}"
    )
    client.set_registered_model_alias(name, CHAMPION, previous)
    return current.version, previous


@dataclass(frozen=True)
class VersionSummary:
    name: str
    version: str
    aliases: tuple[str, ...]
    decision: str
    created: str
    run_id: str
    metrics: dict[str, float]


def list_versions(client: MlflowClient, name: str | None = None) -> list[VersionSummary]:
    """Every version (of one model or of all), newest first, with aliases and test metrics."""
    query = f"name = '{name}'" if name else ""
    versions = client.search_model_versions(query, order_by=["name ASC", "version_number DESC"])
    if name and not versions:
        raise UserError(f"no registered model named '{name}'")
    aliases: dict[str, dict[str, str]] = {}  # search results do not carry aliases
    for model_name in {mv.name for mv in versions}:
        aliases[model_name] = client.get_registered_model(model_name).aliases
    summaries = []
    for mv in versions:
        metrics = {}
        if mv.run_id:
            run_metrics = client.get_run(mv.run_id).data.metrics
            metrics = {
                k.removeprefix("test_"): v
                for k, v in sorted(run_metrics.items())
                if k.startswith("test_")
            }
        created = datetime.fromtimestamp(mv.creation_timestamp / 1000, UTC)
        summaries.append(
            VersionSummary(
                name=mv.name,
                version=str(mv.version),
                aliases=tuple(a for a, v in aliases[mv.name].items() if str(v) == str(mv.version)),
                decision=mv.tags.get(TAG_DECISION, ""),
                created=created.strftime("%Y-%m-%d %H:%M"),
                run_id=mv.run_id or "",
                metrics=metrics,
            )
        )
    return summaries
