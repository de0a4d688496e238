"""Benchmark harness: `python -m bench --quick` (see docs/benchmarks.md).

Every system under test runs on loopback in its own process (and, for peers, its own virtual
environment under bench/.work/venvs/); the same workloads drive each through driver processes
(bench/drivers/) so client libraries never share an interpreter with the harness.
"""
