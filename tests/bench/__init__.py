"""The scale and cost benchmark (issue 7): `python -m tests.bench --help`, docs/benchmarks.md."""
