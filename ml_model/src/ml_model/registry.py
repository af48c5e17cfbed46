"""Model registry: the promotion rule, the ``champion`` alias, manual promote and rollback.

Every decision is written onto the model version (tags and description), so the registry
itself says why each version is or is not the champion, and which version it replaced.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import mlflow
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
TAG_BASELINE = "promotion.baseline_score"

logger = logging.getLogger("ml_model")


@dataclass(frozen=True)
class PromotionDecision:
    promoted: bool
    reason: str
    metric: str
    candidate_score: float | None
    champion_version: str | None = None
    champion_score: float | None = None
    baseline_score: float | None = None


# Judges the new version against a champion (None: there is none yet).
Judge = Callable[[ModelVersion | None], PromotionDecision]


def decide(
    metric: str,
    direction: Direction,
    min_improvement: float,
    *,
    candidate_score: float | None,
    champion_version: str | None,
    champion_score: float | None,
    champion_error: str | None = None,
    baseline_score: float | None = None,
) -> PromotionDecision:
    """Promote when the candidate beats the champion's score on the same held-out data by at
    least ``min_improvement`` in ``direction``. With no champion yet, promote when it is
    strictly better than ``baseline_score`` (the trivial predictor's score on those rows;
    ``min_improvement`` does not apply), or, when no baseline is given, unconditionally."""

    def verdict(promoted: bool, reason: str) -> PromotionDecision:
        return PromotionDecision(
            promoted,
            reason,
            metric,
            candidate_score,
            champion_version,
            champion_score,
            baseline_score,
        )

    if candidate_score is None:
        return verdict(False, f"the candidate has no {metric} on the held-out data")
    if champion_version is None:
        if baseline_score is None:
            return verdict(True, "first version: no champion yet")
        gain = _gain(direction, candidate_score, baseline_score)
        beats = "beats" if gain > 0 else "does not beat"
        return verdict(
            gain > 0,
            f"first version: {metric} {candidate_score:.6g} {beats} the trivial baseline's "
            f"{baseline_score:.6g} on the same held-out data ({direction})",
        )
    if champion_error is not None or champion_score is None:
        return verdict(
            False,
            f"champion v{champion_version} could not be scored on this "
            f"run's held-out data ({champion_error}); promote by hand if meant",
        )
    gain = _gain(direction, candidate_score, champion_score)
    summary = (
        f"{metric} {candidate_score:.6g} vs champion v{champion_version} "
        f"{champion_score:.6g} on the same held-out data ({direction}, "
        f"min improvement {min_improvement:g})"
    )
    if gain > 0 and gain >= min_improvement:
        return verdict(True, f"beats the champion: {summary}")
    return verdict(False, f"does not beat the champion: {summary}")


def _gain(direction: Direction, candidate: float, reference: float) -> float:
    """How much better ``candidate`` is than ``reference`` (negative: worse)."""
    return reference - candidate if direction == "minimize" else candidate - reference


def _no_champion(exc: MlflowException) -> bool:
    """Whether MLflow's error means "no champion": the registered model does not exist
    (RESOURCE_DOES_NOT_EXIST) or has no such alias (INVALID_PARAMETER_VALUE, "Registered model
    alias champion not found."). Both the SQL and file stores answer so; the REST server passes
    their code and message on."""
    if exc.error_code == "RESOURCE_DOES_NOT_EXIST":
        return True
    missing_alias = f"alias {CHAMPION} not found" in str(exc.message)
    return exc.error_code == "INVALID_PARAMETER_VALUE" and missing_alias


def champion_version(client: MlflowClient, name: str) -> ModelVersion | None:
    """The version holding the ``champion`` alias; None only when MLflow says there is none
    (the alias, or the whole model, does not exist). Any other failure (a server error, a
    timeout) raises UserError naming the model: it says nothing about the champion."""
    try:
        return client.get_model_version_by_alias(name, CHAMPION)
    except MlflowException as exc:
        if _no_champion(exc):
            return None
        lines = str(exc.message).strip().splitlines()
        raise UserError(
            f"cannot read the champion of model '{name}' (alias left unchanged): "
            f"{lines[0] if lines else exc.error_code}"
        ) from exc


def _record_decision(
    client: MlflowClient, name: str, version: str, decision: PromotionDecision
) -> None:
    """Write the decision onto the version: exactly its ``promotion.*`` tags (an earlier
    decision's leftovers are removed) and its description. Does not touch the alias."""
    tags = {
        TAG_DECISION: "promoted" if decision.promoted else "rejected",
        TAG_REASON: decision.reason,
        TAG_METRIC: decision.metric,
        TAG_CANDIDATE: decision.candidate_score,
        TAG_CHAMPION: decision.champion_score,
        TAG_BASELINE: decision.baseline_score,
        TAG_PREVIOUS: decision.champion_version if decision.promoted else None,
    }
    for key, value in tags.items():
        if value is None:
            client.delete_model_version_tag(name, version, key)
        else:
            client.set_model_version_tag(name, version, key, str(value))
    verb = "Promoted to champion" if decision.promoted else "Not promoted"
    client.update_model_version(name, version, description=f"{verb}: {decision.reason}")


def register_and_promote(
    client: MlflowClient, name: str, model_uri: str, judge: Judge
) -> tuple[str, PromotionDecision]:
    """Register ``model_uri`` as a new version of ``name`` (through ``mlflow.register_model``,
    on the tracking URI that ``client`` uses as well) and decide whether it becomes the
    champion, in this order: register → decide (``judge`` against the current champion) →
    record the decision on the version → move the alias. Returns (version, final decision).

    The alias moves only if the champion is still the one judged against, re-read just before
    the move; when another trainer moved it meanwhile, the version is judged and recorded
    again against the new champion. (MLflow has no compare-and-set: two trainers whose re-read
    and move interleave within that last moment can still race.)

    The alias move is the last step. When any step before it fails, the new version is deleted
    and the error raised; when the move itself fails, the version is deleted only if the alias
    provably does not point at it (the move may have landed before the error)."""
    version = str(mlflow.register_model(model_uri, name).version)
    try:
        champion = champion_version(client, name)
        while True:
            decision = judge(champion)
            _record_decision(client, name, version, decision)
            if not decision.promoted:
                return version, decision
            current = champion_version(client, name)
            if _version_of(current) == _version_of(champion):
                break
            logger.info(
                "the champion of %s moved to v%s meanwhile: judging again",
                name,
                _version_of(current),
            )
            champion = current
    except BaseException:
        _discard(client, name, version, may_be_champion=False)
        raise
    try:
        client.set_registered_model_alias(name, CHAMPION, version)
    except BaseException:
        _discard(client, name, version, may_be_champion=True)
        raise
    return version, decision


def _version_of(model_version: ModelVersion | None) -> str | None:
    return None if model_version is None else str(model_version.version)


def _discard(client: MlflowClient, name: str, version: str, *, may_be_champion: bool) -> None:
    """Delete a version whose promotion failed, so a failed run leaves none behind, but never
    the champion: with ``may_be_champion`` only when the alias provably points elsewhere. A
    failure here is logged, not raised, so that the caller's error is the one reported."""
    try:
        if may_be_champion and _version_of(champion_version(client, name)) == version:
            return
        client.delete_model_version(name, version)
        logger.info("deleted %s v%s: the run failed before its promotion was done", name, version)
    except (MlflowException, UserError) as exc:
        logger.warning("%s v%s stays registered after the failure: %s", name, version, exc)


def annotate_model(client: MlflowClient, name: str, description: str, tags: dict[str, str]) -> None:
    """Create the registered model when it is new; in any case set its description and tags."""
    try:
        client.create_registered_model(name, tags=tags, description=description)
        return
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_ALREADY_EXISTS":
            raise
    client.update_registered_model(name, description=description)
    for key, value in tags.items():
        client.set_registered_model_tag(name, key, value)


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
    reason: str
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
                reason=mv.tags.get(TAG_REASON, ""),
                created=created.strftime("%Y-%m-%d %H:%M"),
                run_id=mv.run_id or "",
                metrics=metrics,
            )
        )
    return summaries
