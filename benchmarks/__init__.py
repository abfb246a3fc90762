"""Benchmarks: generated code against hand-written code, policy overhead, compiler scaling.

Run ``python -m benchmarks`` (``make bench``); see ``python -m benchmarks --help``.
"""
