"""Test doubles shared by the test suite and the benchmarks: a fake OpenAI-compatible server, synthetic chunks."""
