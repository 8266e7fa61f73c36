"""Retrain decision: drift or degradation."""

from __future__ import annotations


def should_retrain(drift_detected: bool, degraded: bool) -> bool:
    """Retrain on retraining-worthy drift or on degraded live performance."""
    return bool(drift_detected or degraded)
