"""Hints for failing checks: a pass over scored results."""
