"""Temporal activities and the plain functions they wrap."""
