"""Benchmarks that print figures (run as `PYTHONPATH=. python bench/NAME.py`). Their real
parts come from `harness/`; nothing here imports tests/."""
