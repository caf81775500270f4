"""Benchmarks: they print figures; they do not assert (tests do)."""
