"""Benchmarks: measured side by side in one run, written to dist/bench/. Never tests."""
