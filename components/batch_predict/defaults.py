"""Defaults of the batch_predict component, importable without its logic's libraries."""

DEFAULT_CHUNK_ROWS = 250_000
"""Rows scored per ``predict_proba`` call: big enough that per-call overhead vanishes."""
