"""LXD test runner (plain functions) and the test activity."""
