"""Demo data for `make run` and the benchmarks."""
