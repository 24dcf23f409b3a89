"""How activities turn the image server's refusals into Temporal failures."""

from collections.abc import Iterator
from contextlib import contextmanager

from temporalio.exceptions import ApplicationError

from clients.catalog import CatalogRejected


@contextmanager
def refusals_are_final() -> Iterator[None]:
    """A 4xx from the image server will be the same next time: fail without retrying."""
    try:
        yield
    except CatalogRejected as exc:
        raise ApplicationError(str(exc), type="CatalogRejected", non_retryable=True) from None
