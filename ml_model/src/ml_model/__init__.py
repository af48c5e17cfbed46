"""Config-driven scikit-learn + XGBoost training, tracked and registered in MLflow.

Kept free of imports: this package travels inside every logged model (as MLflow ``code_paths``),
and loading a model must import only what the model's own classes need.
"""
