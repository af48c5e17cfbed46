"""Local Docker engine, images and compose project for the end-to-end tests.

Entry points (from the repository root, as root):

    python -m tests.e2e.harness run             # make e2e: engine, images, suite, clean-up
    python -m tests.e2e.harness compose-config  # make compose-config: static checks, no engine
    python -m tests.e2e.harness engine up       # install + start dockerd when needed
    python -m tests.e2e.harness engine down     # stop dockerd only if the harness started it
    python -m tests.e2e.harness engine status
    python -m tests.e2e.harness images          # base, stand-in and project images
    python -m tests.e2e.harness clean           # remove the test stack's containers and volumes
    python -m tests.e2e.harness reset           # remove the harness's images and build cache

Everything here is test scaffolding: the machines that run the tests reach PyPI and the Debian
mirror but no container registry, so base images are built with debootstrap and the third-party
images the stack uses are replaced by local stand-ins under the ``mlops-e2e/`` namespace.
See tests/e2e/README.md.
"""
