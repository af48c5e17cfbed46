"""Local Docker engine, images and compose project for the end-to-end tests.

Entry points (from the repository root, as root):

    python -m tools.e2e run             # make e2e: engine, images, suite, clean-up
    python -m tools.e2e compose-config  # make compose-config: static checks, no engine
    python -m tools.e2e engine up       # install + start dockerd when needed
    python -m tools.e2e engine down     # stop dockerd only if the harness started it
    python -m tools.e2e engine status
    python -m tools.e2e images          # base, stand-in and project images
    python -m tools.e2e clean           # remove the test stack's containers and volumes
    python -m tools.e2e reset           # remove the harness's images and build cache

Everything here is test scaffolding: the machines that run the tests reach PyPI and the Debian
mirror but no container registry, so base images are built with debootstrap and the third-party
images the stack uses are replaced by local stand-ins under the ``mlops-e2e/`` namespace.
See tests/e2e/README.md.
"""
