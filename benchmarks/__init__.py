"""Load and scale measurements: each scenario prints a table and writes JSON to
``benchmarks/results/``. Run ``python -m benchmarks <scenario>``."""
