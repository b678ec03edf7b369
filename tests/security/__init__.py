"""Adversarial regression tests: attacks on the store kept as tests (issue 12)."""
