"""Easel's benchmark suite: one command per benchmark (`python -m benchmarks.<name>`), ratios
measured within the same run, never absolute-time assertions (see docs/benchmarks.md)."""
