"""Faults of the test machinery, kept apart from verdicts about the image.

A *verdict* (the image did or did not do what a check asks) is recorded as passed or
failed. A *fault* (LXD's API or exec machinery failing, the instance vanishing, the image
server unreachable) says nothing about the image, so it is never recorded as failed: the
check is tried once more on the same instance where that is sound, else the attempt
fails with a retryable `TestMachineryFault` and Temporal retries it on a new instance.
The check a fault interrupted stays `running` in the catalog with the fault as its
evidence; the gate and missing-checks count only `passed`, so it is simply not proven yet
and the retry runs it again.
"""

from collections.abc import Iterator
from contextlib import contextmanager

import httpx
import requests
from pylxd.exceptions import LXDAPIException
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.lxd_test.execs import ExecFault, describe
from clients.lxd import LxdUnavailable

FAULT_TYPE = "TestMachineryFault"
# What talking to LXD can raise: its API refusing, its socket, its exec machinery.
LXD_ERRORS = (LXDAPIException, requests.RequestException, OSError, ExecFault, LxdUnavailable)


def component(exc: BaseException) -> str:
    return "LXD exec" if isinstance(exc, ExecFault) else "LXD API"


class MachineryFault(Exception):
    """The test machinery failed; names the component and the error."""

    def __init__(self, component: str, error: str) -> None:
        super().__init__(f"{component}: {error}")


@contextmanager
def faults_are_retried() -> Iterator[None]:
    """A fault fails the attempt as retryable, so Temporal retries it on a new instance.

    The failure carries the message only: the chain behind an httpx error can exceed
    Temporal's failure size limit (then the message is lost), so the chain is logged here.
    """
    caught: Exception
    try:
        yield
        return
    except MachineryFault as exc:
        message, caught = str(exc), exc
    except httpx.HTTPError as exc:  # 5xx or unreachable; a 4xx is a CatalogRejected
        message, caught = f"image server: {describe(exc)}", exc
    except LXD_ERRORS as exc:
        message, caught = f"{component(exc)}: {describe(exc)}", exc
    activity.logger.warning("test machinery fault: %s", message, exc_info=caught)
    raise ApplicationError(message, type=FAULT_TYPE) from None
