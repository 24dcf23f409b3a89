"""Routes whose database session gives its connection back before FastAPI checks the answer.

FastAPI validates a sync route's return value in a second worker-thread hop. A session
the route used still holds its connection then: once every thread queues for the pool
and every pooled connection waits for a thread, the server stalls until the pool gives
up (bench/load.py found it: 500s on every route). Closing the route's sessions as the
route returns, in its own hop, breaks the cycle. Routes answer with pydantic models
built from the rows, so nothing reads the closed session afterwards.
"""

import functools
import inspect
from collections.abc import Callable
from typing import Any

from fastapi.routing import APIRoute
from sqlmodel import Session


def _releasing(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    @functools.wraps(endpoint)
    def call(*args: Any, **kwargs: Any) -> Any:
        try:
            return endpoint(*args, **kwargs)
        finally:
            for value in kwargs.values():
                if isinstance(value, Session):
                    value.close()

    return call


class ReleasingRoute(APIRoute):
    """An APIRoute whose sync endpoint closes the sessions it was given when it returns."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        if not inspect.iscoroutinefunction(endpoint):
            endpoint = _releasing(endpoint)
        super().__init__(path, endpoint, **kwargs)
