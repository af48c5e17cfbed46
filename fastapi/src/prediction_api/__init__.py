"""Prediction service: serves the registry's current champion over HTTP.

Importing this package is cheap; MLflow, scikit-learn and XGBoost are imported by the model
loader in its own thread, so the service answers ``/health`` before they are in memory.
"""
