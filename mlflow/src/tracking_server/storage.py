"""Artifact store preparation: make sure the bucket exists before the server accepts uploads."""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError, NoCredentialsError

from tracking_server.errors import StartupError
from tracking_server.retrying import Report, start_up_retrying
from tracking_server.settings import TrackingServerSettings

# Answers that mean "the S3 server behind the proxy is not up yet": retry them.
_TRANSIENT_STATUS = frozenset({500, 502, 503, 504})


def s3_client(settings: TrackingServerSettings) -> Any:
    """A boto3 S3 client for the configured endpoint; credentials from the settings or boto3's
    usual chain when they are unset."""
    keys = {}
    if settings.aws_access_key_id and settings.aws_secret_access_key:
        keys = {
            "aws_access_key_id": settings.aws_access_key_id.get_secret_value(),
            "aws_secret_access_key": settings.aws_secret_access_key.get_secret_value(),
        }
    config = Config(connect_timeout=5, read_timeout=30, retries={"max_attempts": 1})
    return boto3.client("s3", endpoint_url=settings.s3_endpoint_url, config=config, **keys)


def ensure_bucket(settings: TrackingServerSettings, report: Report) -> None:
    """Create the artifacts bucket unless it exists; a bucket we already own counts as success.

    Waits up to ``settings.s3_wait_timeout`` for the endpoint to answer, retrying with backoff
    (0.5 s doubling to 5 s); raises StartupError naming the endpoint and the reason otherwise.
    """
    bucket = settings.artifacts_bucket
    endpoint = settings.s3_endpoint_url or "AWS S3"
    timeout = settings.s3_wait_timeout
    client = s3_client(settings)

    retrying = start_up_retrying("S3 endpoint", timeout, _transient, _reason, report)
    try:
        created = retrying(_create_if_missing, client, bucket)
    except NoCredentialsError:
        raise StartupError(
            "no S3 credentials: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
        ) from None
    except (BotoCoreError, ClientError) as error:
        if not _transient(error):
            raise StartupError(f"bucket {bucket!r} at {endpoint}: {_reason(error)}") from None
        raise StartupError(
            f"S3 endpoint {endpoint} not ready after {timeout:g}s: {_reason(error)}"
        ) from None
    report(f"bucket {bucket!r} {'created' if created else 'exists'} at {endpoint}")


def _create_if_missing(client: Any, bucket: str) -> bool:
    """True when this call created the bucket, False when it was already there."""
    try:
        client.head_bucket(Bucket=bucket)
        return False
    except ClientError as error:
        if _status(error) != 404:
            raise
    options: dict[str, Any] = {}
    region = client.meta.region_name
    if region and region != "us-east-1":
        options["CreateBucketConfiguration"] = {"LocationConstraint": region}
    try:
        client.create_bucket(Bucket=bucket, **options)
    except ClientError as error:
        # Another replica created it between our HEAD and PUT.
        if error.response.get("Error", {}).get("Code") == "BucketAlreadyOwnedByYou":
            return False
        raise
    return True


def _status(error: ClientError) -> int:
    return int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


def _transient(error: BaseException) -> bool:
    """True when ``error`` means the endpoint is not up yet, so that waiting may cure it."""
    if isinstance(error, ClientError):
        return _status(error) in _TRANSIENT_STATUS
    # Connection refused, timeouts, DNS not resolvable yet: the endpoint is not up. Missing
    # credentials are botocore errors too, but no endpoint coming up will supply them.
    return isinstance(error, BotoCoreError) and not isinstance(error, NoCredentialsError)


def _reason(error: BaseException) -> str:
    if isinstance(error, ClientError):
        details = error.response.get("Error", {})
        status = _status(error)
        code = details.get("Code", "")
        words = [f"HTTP {status}", "" if code == str(status) else code, details.get("Message", "")]
        return " ".join(word for word in words if word)
    return str(error).splitlines()[0] if str(error) else type(error).__name__
