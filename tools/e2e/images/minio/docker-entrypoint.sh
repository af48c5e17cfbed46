#!/bin/sh
# `docker run <image> server /data` runs `minio server /data`, as in the official image.
set -e
if [ "$1" != "minio" ] && [ -n "$1" ] && ! command -v "$1" >/dev/null 2>&1; then
    set -- minio "$@"
fi
exec "$@"
