"""Acceptance tests: the published reproductions, the executable notebooks, and the trained toys' findings."""
