"""`python -m taskctl token`: a bearer token for a stack's own app client."""
