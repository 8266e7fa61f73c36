"""Pipelines, by name. Each module defines ``pipeline`` (a ``@dsl.pipeline``) and ``NAME``."""

PIPELINES = ("training", "batch_prediction", "monitoring")
