"""Shared pieces of the image server tests: operator clients, unique images, serials."""

import itertools
import ssl

import httpx
from sqlmodel import Session

from core.catalog_client import CatalogClient
from core.models import AssessmentReport, ImageSpec, TransitionRequest
from server_api.tokens import create_token
from tests.conftest import RunningServer

_serials = (f"20261126-{n:04d}" for n in itertools.count(1))
_names = (f"img{n}" for n in itertools.count(1))


def next_serial() -> str:
    return next(_serials)


def new_image(**overrides: object) -> ImageSpec:
    """An image no other test uses, so retention and feeds of one test stay its own."""
    fields = {
        "os": next(_names),
        "release": "one",
        "arches": ["x86_64", "i686"],
        "checks": ["boots"],
    }
    return ImageSpec.model_validate(fields | overrides)


def token(server: RunningServer, scope: str, name: str = "t") -> str:
    with Session(server.app.state.engine) as session:
        return create_token(session, name, scope)


def client(server: RunningServer, secret: str) -> CatalogClient:
    """A CatalogClient acting with the token `secret`."""
    return CatalogClient(server.client_settings(), token=secret)


def http(server: RunningServer) -> httpx.Client:
    """A plain HTTPS client that trusts the server, as LXD or a browser would see it."""
    ca = ssl.create_default_context(cafile=server.server_settings.cert_path)
    return httpx.Client(base_url=server.url, verify=ca)


def pass_all(catalog: CatalogClient, image: ImageSpec, serial: str) -> None:
    """Record a pass for every check the server still needs."""
    for arch, checks in catalog.missing_checks(image.name, serial).items():
        for check in checks:
            report = AssessmentReport(arch=arch, check=check, host="h", state="passed")
            catalog.record(image.name, serial, report)


def move(catalog: CatalogClient, image: ImageSpec, serial: str, *states: str) -> None:
    for to in states:
        catalog.transition(image.name, serial, TransitionRequest(to=to, reason="test"))
