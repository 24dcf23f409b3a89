"""API fuzz run: schemathesis generates requests for every operation in docs/openapi.json
(valid and invalid data alike) and sends them with valid tokens to a real server over
HTTPS. No answer may be a server error, and a 2xx answer must match its documented schema.

The server is this module's own: the fuzzer revokes tokens and collects garbage, which
would break other tests sharing the session's server. Half the examples aim their path
parameters at a real version, its files and a real private feed, so the handlers behind
the 404s run too. POST /api/v1/pipelines finds no Temporal at its address: 503 is the
right answer there, not a server error."""

from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import strategies as st
from schemathesis.checks import CheckFunction, not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance
from sqlmodel import Session

from core.catalog import Channel
from server_api.openapi import DOC
from server_api.schemas import CredentialCreate, TokenCreate, TokenScope
from server_api.tokens import issue_credential, issue_token
from tests.support import (
    RunningServer,
    client,
    free_port,
    move,
    new_image,
    next_serial,
    publish_fake,
)

pytestmark = pytest.mark.slow  # a fuzz run

schema = schemathesis.openapi.from_path(DOC)
schema.config.generation.update(max_examples=20, database="none")

OPERATOR_ROUTES = ("/api/v1/tokens", "/api/v1/credentials", "/api/v1/gc")


class Target:
    """The fuzzed server, real values to aim path parameters at, and live tokens."""

    def __init__(self, server: RunningServer, tmp: Path) -> None:
        self.server = server
        self.tokens: dict[TokenScope, tuple[int, str]] = {}
        self.mint()
        publisher = client(server, self.tokens[TokenScope.publisher][1])
        image, serial = new_image(arches=["x86_64"]), next_serial()
        req = publish_fake(publisher, tmp, image, serial)
        move(publisher, image, serial, "testing")
        publisher.close()
        self.real = {
            "image": image.name,
            "serial": serial,
            "sha256": req.arches[0].files[1].sha256,
            "channel": Channel.testing.value,
        }
        self.feed()

    def mint(self) -> None:
        """Fresh tokens of both scopes: at the start, and after the fuzzer revoked ours."""
        with Session(self.server.app.state.engine) as session:
            for scope in TokenScope:
                issued = issue_token(session, TokenCreate(name=f"fuzz-{scope}", scope=scope))
                self.tokens[scope] = (issued.id, issued.token)

    def feed(self) -> None:
        """A fresh private feed of the testing channel: at the start and after a revocation."""
        with Session(self.server.app.state.engine) as session:
            cred = issue_credential(session, CredentialCreate(name="fuzz", channel="testing"))
        self.real["credential_id"] = str(cred.id)
        self.real["secret"] = cred.feed_path.removeprefix("/feeds/")

    def headers(self, path: str) -> dict[str, str]:
        scope = TokenScope.operator if path.startswith(OPERATOR_ROUTES) else TokenScope.publisher
        return {"Authorization": f"Bearer {self.tokens[scope][1]}"}

    def after(self, path: str, status: int, body: dict) -> None:
        """Put back what a successful revocation took from the later examples."""
        if status != 200:
            return
        if path == "/api/v1/tokens/{token_id}/revoke" and body["id"] in {
            token_id for token_id, _ in self.tokens.values()
        }:
            self.mint()
        if (
            path == "/api/v1/credentials/{credential_id}/revoke"
            and str(body["id"]) == (self.real["credential_id"])
        ):
            self.feed()


@pytest.fixture(scope="module")
def target(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Target]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("ICEFLOE_TEMPORAL_ADDRESS", f"127.0.0.1:{free_port()}")  # nothing listens
        with RunningServer(tmp_path_factory.mktemp("fuzz")) as server:
            yield Target(server, tmp_path_factory.mktemp("fuzz-files"))


@schema.parametrize()
@schema.given(aim=st.booleans())
def test_no_server_error_and_2xx_answers_match_the_schema(case, aim: bool, target: Target):
    if aim:
        for name in case.path_parameters or {}:
            if name in target.real:
                case.path_parameters[name] = target.real[name]
    response = case.call(
        base_url=target.server.url,
        headers=target.headers(case.path),
        verify=str(target.server.server_settings.cert_path),
        timeout=30,
    )
    no_temporal = case.path == "/api/v1/pipelines" and response.status_code == 503
    checks: list[CheckFunction] = [] if no_temporal else [not_a_server_error]
    if 200 <= response.status_code < 300:
        checks.append(response_schema_conformance)
    if checks:
        case.validate_response(response, checks=checks)
    if case.path.endswith("/revoke"):
        target.after(case.path, response.status_code, response.json())
