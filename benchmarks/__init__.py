"""Benchmarks: run as modules (`python -m benchmarks.enroll`), not collected by pytest."""
