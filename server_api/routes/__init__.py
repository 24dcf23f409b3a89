"""HTTP routes: the write API under /api/v1, channel feeds under /channels."""
