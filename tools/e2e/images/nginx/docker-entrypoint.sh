#!/bin/sh
# Run /docker-entrypoint.d/*.sh (executable) and *.envsh (sourced) before nginx starts,
# as the official image's entrypoint does.
set -e

if [ "$1" = "nginx" ] || [ "$1" = "nginx-debug" ]; then
    for f in $(find /docker-entrypoint.d/ -follow -type f -print | sort -V); do
        case "$f" in
            *.envsh)
                if [ -x "$f" ]; then
                    echo "$0: Sourcing $f" >&2
                    . "$f"
                else
                    echo "$0: Ignoring $f, not executable" >&2
                fi
                ;;
            *.sh)
                if [ -x "$f" ]; then
                    echo "$0: Launching $f" >&2
                    "$f"
                else
                    echo "$0: Ignoring $f, not executable" >&2
                fi
                ;;
            *) echo "$0: Ignoring $f" >&2 ;;
        esac
    done
    echo "$0: Configuration complete; ready for start up" >&2
fi

exec "$@"
