"""Benchmarks: load generator, peers and the scripts that write BENCHMARKS.md."""
