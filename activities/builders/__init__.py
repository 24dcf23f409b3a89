"""Image builders: plain functions that turn a spec into LXD image files."""
