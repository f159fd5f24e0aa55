"""Operations on a deployed (or local) stack's tasks: `python -m taskctl redrive`."""
