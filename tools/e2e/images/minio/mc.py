#!/opt/minio/bin/python
"""A small `mc`: `ready`, `alias set`, `mb [--ignore-existing|-p]`, `ls`, `--version`.

Aliases resolve like the real client: MC_HOST_<alias>=http://KEY:SECRET@host:port, then the
config file in MC_CONFIG_DIR (or ~/.mc), then the built-in `local` (http://localhost:9000).
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

VERSION = "mc version RELEASE.stand-in"


def config_path() -> Path:
    base = os.environ.get("MC_CONFIG_DIR") or str(Path.home() / ".mc")
    return Path(base) / "config.json"


def load_config() -> dict[str, Any]:
    path = config_path()
    if path.is_file():
        return dict(json.loads(path.read_text()))
    return {"version": "10", "aliases": {}}


def resolve(alias: str) -> dict[str, str]:
    """URL and keys for an alias."""
    env = os.environ.get(f"MC_HOST_{alias}")
    if env:
        parts = urlsplit(env)
        netloc = parts.hostname or ""
        if parts.port:
            netloc += f":{parts.port}"
        return {
            "url": urlunsplit((parts.scheme, netloc, "", "", "")),
            "accessKey": parts.username or "",
            "secretKey": parts.password or "",
        }
    aliases = load_config().get("aliases", {})
    if alias in aliases:
        return dict(aliases[alias])
    if alias == "local":
        return {
            "url": "http://localhost:9000",
            "accessKey": os.environ.get("MINIO_ROOT_USER", ""),
            "secretKey": os.environ.get("MINIO_ROOT_PASSWORD", ""),
        }
    sys.exit(f"mc: <ERROR> Unable to find alias `{alias}`.")


def s3_client(alias: str) -> Any:
    import boto3

    target = resolve(alias)
    return boto3.client(
        "s3",
        endpoint_url=target["url"],
        aws_access_key_id=target["accessKey"] or "anonymous",
        aws_secret_access_key=target["secretKey"] or "anonymous",
        region_name="us-east-1",
    )


def cmd_ready(args: list[str]) -> int:
    alias = next((a for a in args if not a.startswith("-")), "local")
    url = resolve(alias)["url"].rstrip("/") + "/minio/health/ready"
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            if response.status == 200:
                print(f"The cluster '{alias}' is ready")
                return 0
    except (urllib.error.URLError, OSError):
        pass
    print(f"The cluster '{alias}' is unreachable", file=sys.stderr)
    return 1


def cmd_alias(args: list[str]) -> int:
    if len(args) < 3 or args[0] not in {"set", "s"}:
        sys.exit("mc: usage: mc alias set ALIAS URL [ACCESSKEY SECRETKEY]")
    name, url = args[1], args[2]
    keys = [*args[3:5], "", ""][:2]
    config = load_config()
    config.setdefault("aliases", {})[name] = {
        "url": url,
        "accessKey": keys[0],
        "secretKey": keys[1],
        "api": "s3v4",
        "path": "auto",
    }
    path = config_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(config, indent=2))
    print(f"Added `{name}` successfully.")
    return 0


def cmd_mb(args: list[str]) -> int:
    ignore_existing = any(a in {"--ignore-existing", "-p"} for a in args)
    from botocore.exceptions import ClientError

    for target in (a for a in args if not a.startswith("-")):
        alias, _, bucket = target.partition("/")
        bucket = bucket.strip("/")
        client = s3_client(alias)
        existing = {entry["Name"] for entry in client.list_buckets().get("Buckets", [])}
        if bucket in existing:
            if ignore_existing:
                continue
            print(
                f"mc: <ERROR> Unable to make bucket `{target}`. Your previous request to create "
                "the named bucket succeeded and you already own it.",
                file=sys.stderr,
            )
            return 1
        try:
            client.create_bucket(Bucket=bucket)
        except ClientError as error:
            print(f"mc: <ERROR> Unable to make bucket `{target}`. {error}", file=sys.stderr)
            return 1
        print(f"Bucket created successfully `{target}`.")
    return 0


def cmd_ls(args: list[str]) -> int:
    target = next((a for a in args if not a.startswith("-")), "local")
    alias, _, rest = target.partition("/")
    bucket, _, prefix = rest.partition("/")
    client = s3_client(alias)
    if not bucket:
        for entry in client.list_buckets().get("Buckets", []):
            print(f"{entry['Name']}/")
        return 0
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
    for page in pages:
        for entry in page.get("Contents", []):
            print(f"{entry['Size']:>10} {entry['Key']}")
    return 0


COMMANDS = {"ready": cmd_ready, "alias": cmd_alias, "mb": cmd_mb, "ls": cmd_ls}


def main(argv: list[str]) -> int:
    args = [a for a in argv if a not in {"--quiet", "-q", "--no-color", "--json"}]
    if not args or args[0] in {"-h", "--help", "help"}:
        print(__doc__)
        return 0
    if args[0] in {"-v", "--version", "version"}:
        print(VERSION)
        return 0
    command = COMMANDS.get(args[0])
    if command is None:
        print(f"mc: `{args[0]}` is not supported by this mc.", file=sys.stderr)
        return 1
    return command(args[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
