"""Command line of the e2e harness: `python -m tools.e2e --help`."""

from __future__ import annotations

import argparse
import sys
import time

from . import engine, images, runner, static
from .proc import HarnessError, log, run


def _print_timings(timings: dict[str, float]) -> None:
    for name, seconds in timings.items():
        print(f"{name:16s} {seconds:8.1f}s")
    print(f"{'total':16s} {sum(timings.values()):8.1f}s")


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="python -m tools.e2e", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser(
        "run", help="engine, images, the e2e suite, clean-up (what `make e2e` runs)"
    ).add_argument(
        "pytest_args", nargs="*", help="extra pytest arguments, after -- (e.g. -- -k ports)"
    )
    sub.add_parser("compose-config", help="static checks of docker-compose.yml and Dockerfiles")
    eng = sub.add_parser("engine", help="install/start/stop the local Docker engine")
    eng.add_argument("action", choices=["up", "down", "status"])
    img = sub.add_parser("images", help="build the base, stand-in and project images")
    img.add_argument("--no-project", action="store_true", help="stand-ins only")
    img.add_argument("--no-gpu", action="store_true", help="skip the CUDA trainer image")
    img.add_argument("--only", nargs="+", metavar="NAME", help="these stand-ins only")
    sub.add_parser("clean", help="remove the test stack's containers, networks and volumes")
    sub.add_parser("disk", help="disk used by the engine")
    sub.add_parser("reset", help="remove the harness's images and the build cache")
    args = parser.parse_args(argv)

    if args.command == "run":
        return runner.main(args.pytest_args)
    if args.command == "compose-config":
        return static.main()
    started = time.monotonic()
    try:
        if args.command == "engine":
            result = {"up": engine.up, "down": engine.down, "status": engine.status}[args.action]()
            if isinstance(result, dict):
                for key, value in result.items():
                    print(f"{key}: {value}")
        elif args.command == "images":
            if args.only:
                timings = images.ensure_stand_ins(args.only)
            else:
                timings = images.ensure_all(project=not args.no_project, gpu=not args.no_gpu)
            _print_timings(timings)
        elif args.command == "clean":
            runner.clean_projects()
        elif args.command == "disk":
            print(run([engine.docker_cli(), "system", "df"]).stdout)
            print(run(["du", "-sh", engine.info()["root_dir"]]).stdout)
        elif args.command == "reset":
            images.remove_all()
    except HarnessError as error:
        log(f"FAILED after {time.monotonic() - started:.0f}s: {error}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
