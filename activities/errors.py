"""How activities turn the image server's answers into Temporal failures."""

from collections.abc import Iterator
from contextlib import contextmanager

import httpx
from temporalio.exceptions import ApplicationError

from clients.catalog import CatalogRejected, ImageHeld

# The failure type of a promotion the server refused because the image is held.
IMAGE_HELD = "ImageHeld"


@contextmanager
def image_server_errors() -> Iterator[None]:
    """A 4xx will be the same next time: fail without retrying. The server unreachable or
    failing (5xx): retried, said in one line; its chained traceback would not fit in a
    Temporal failure ("Failure exceeds size limit." is all an operator would see)."""
    try:
        yield
    except ImageHeld as exc:
        raise ApplicationError(str(exc), type=IMAGE_HELD, non_retryable=True) from None
    except CatalogRejected as exc:
        raise ApplicationError(str(exc), type="CatalogRejected", non_retryable=True) from None
    except httpx.HTTPError as exc:
        raise ApplicationError(
            f"image server: {type(exc).__name__}: {exc}"[:2000], type="ImageServerUnavailable"
        ) from None
