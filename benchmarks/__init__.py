"""Speed comparisons that print a table and write their section of ``docs/benchmarks.md``.

Run one with ``python -m benchmarks.<name>`` (``--help`` lists its options); ``python -m benchmarks.run_all``
runs them all. Never part of the test suite: timings are measured here, behaviour is tested in ``tests/``.
"""
