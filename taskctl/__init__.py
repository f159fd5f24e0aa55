"""Tooling that is not deployed: the local stack, the load test, benchmarks."""
