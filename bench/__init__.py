"""Benchmarks of the eCourt suite against raw baselines run side by side (``make bench``).

Speed is only ever reported as a ratio against a raw baseline measured in the same run; see
``bench/README.md``.
"""
