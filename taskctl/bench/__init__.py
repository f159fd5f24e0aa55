"""`python -m taskctl bench`: cost per million tasks, cold-start proxy, local throughput."""
