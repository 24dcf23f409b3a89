"""The image server: catalog, file store, channel feeds and the API CI and workers call."""
