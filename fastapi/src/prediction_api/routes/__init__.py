"""The service's routers: ``predict`` (the model's inputs and answers), ``ops`` (probes,
model description, metrics) and ``admin`` (reloads)."""
