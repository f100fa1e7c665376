"""Benchmarks of lowrank: refresh cost, optimizer-step time, memory, end-to-end throughput.

Each module runs from the repository root as ``python -m bench.<name>`` and prints a table;
``docs/benchmarks.md`` records their results with the machine they ran on.
"""
