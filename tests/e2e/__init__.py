"""End-to-end tests: the compose stack built and run on a local Docker engine."""
