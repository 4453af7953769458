"""Benchmarks of single parts: `ragload bench-mock` (the mock server) and `ragload bench-queue` (the queue).

Figures, not asserts. The load sweep, `ragload bench`, is loadtests/sweep/.
"""
