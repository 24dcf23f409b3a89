"""Adapters to the systems Icefloe talks to: the image server (httpx), LXD (pylxd), Temporal."""
