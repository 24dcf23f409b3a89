"""The `icefloe` command line: the outermost layer, it may import every package."""
