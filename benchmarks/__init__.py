"""Benchmarks: scripts printing side-by-side ratios measured in one run (docs/benchmarks.md)."""
