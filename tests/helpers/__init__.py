"""Test infrastructure shared across the suite: real servers started on 127.0.0.1 (an S3 API, MLflow, Ray nodes)."""
