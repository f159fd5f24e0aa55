"""Tooling that is not deployed: the local stack, the load test, benchmarks, the fault campaign,
the capacity model, tokens and the operator's commands."""
