"""Local Docker engine and images for the end-to-end tests.

Entry points (from the repository root, as root):

    python -m tests.e2e.harness engine up      # install + start dockerd when needed
    python -m tests.e2e.harness engine down    # stop dockerd only if `engine up` started it
    python -m tests.e2e.harness engine status
    python -m tests.e2e.harness images         # base, stand-in and trainer images

Everything here is test scaffolding: the machines that run the tests reach PyPI and the Debian
mirror but no container registry, so base images are built with debootstrap and the third-party
images the stack uses are replaced by local stand-ins under the ``mlops-e2e/`` namespace.
"""
