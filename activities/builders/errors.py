"""Errors a builder raises: one line saying what went wrong and what to do."""


class BuildError(Exception):
    """A build failed; the message is one line meant for a human.

    `retryable` marks failures another attempt may not repeat (a tool that ran and
    failed, e.g. on a mirror mid-sync); a missing tool or a bad input is final.
    """

    def __init__(self, message: str, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable
