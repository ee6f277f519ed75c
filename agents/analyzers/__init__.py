"""Deterministic tools the specialists ground their findings in."""
