"""`python -m taskctl load`: submit N tasks to a deployed API and judge them against the policy."""
