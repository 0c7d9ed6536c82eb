"""Benchmarks that print measurements (never timed tests); run as ``python -m bench.<name>``."""
