"""Deterministic workflows: no I/O here, only orchestration of activities."""
