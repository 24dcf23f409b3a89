"""Errors a builder raises: one line saying what went wrong and what to do."""


class BuildError(Exception):
    """A build failed; the message is one line meant for a human."""
