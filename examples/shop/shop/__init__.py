"""A tiny shop used to demonstrate pr-council."""
