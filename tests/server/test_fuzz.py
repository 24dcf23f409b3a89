"""API fuzz run: schemathesis generates requests for every operation in docs/openapi.json
(valid and invalid data alike) and sends them with valid tokens to a real server over
HTTPS. No answer may be a server error, and a 2xx answer must match its documented schema.

The server is this module's own: the fuzzer revokes tokens and collects garbage, which
would break other tests sharing the session's server. Half the examples aim their path
parameters at a real version, its files and a real private feed, so the handlers behind
the 404s run too, and name a shipped definition in POST /api/v1/pipelines, so pipelines
start. That route reaches a real Temporal dev server, in a namespace of the module's own
(no worker takes what the fuzzer starts there): its answers are held to the same rules."""

from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
import schemathesis
from hypothesis import strategies as st
from schemathesis.checks import CheckFunction, not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance
from sqlmodel import Session
from temporalio.client import Client

from core.catalog import Channel
from harness.publish import move, new_image, next_serial, publish
from harness.remote import namespace
from harness.servers import RunningServer, client
from server_api.openapi import DOC
from server_api.schemas import CredentialCreate, TokenCreate, TokenScope
from server_api.tokens import issue_credential, issue_token

pytestmark = pytest.mark.slow  # a fuzz run

schema = schemathesis.openapi.from_path(DOC)
schema.config.generation.update(max_examples=20, database="none")

pytestmark = pytest.mark.temporal

OPERATOR_ROUTES = ("/api/v1/tokens", "/api/v1/credentials", "/api/v1/gc")


class Target:
    """The fuzzed server, real values to aim path parameters at, and live tokens."""

    def __init__(self, server: RunningServer, tmp: Path) -> None:
        self.server = server
        self.tokens: dict[TokenScope, tuple[int, str]] = {}
        self.pipeline_answers: set[int] = set()  # what POST /api/v1/pipelines said
        self.mint()
        publisher = client(server, self.tokens[TokenScope.publisher][1])
        image, serial = new_image(arches=["x86_64"]), next_serial()
        req = publish(publisher, image, serial, tmp=tmp).request
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
        with Session(self.server.services.engine) as session:
            for scope in TokenScope:
                issued = issue_token(session, TokenCreate(name=f"fuzz-{scope}", scope=scope))
                self.tokens[scope] = (issued.id, issued.token)

    def feed(self) -> None:
        """A fresh private feed of the testing channel: at the start and after a revocation."""
        with Session(self.server.services.engine) as session:
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


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def target(
    temporal: Client, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Target]:
    fuzzed = await namespace(temporal, "icefloe-fuzz")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("ICEFLOE_TEMPORAL_ADDRESS", temporal.service_client.config.target_host)
        env.setenv("ICEFLOE_TEMPORAL_NAMESPACE", fuzzed.namespace)
        with RunningServer(tmp_path_factory.mktemp("fuzz")) as server:
            yield Target(server, tmp_path_factory.mktemp("fuzz-files"))
    async for started in fuzzed.list_workflows('ExecutionStatus="Running"'):
        await fuzzed.get_workflow_handle(started.id).terminate("the fuzz run is over")


@schema.parametrize()
@schema.given(aim=st.booleans())
def test_no_server_error_and_2xx_answers_match_the_schema(case, aim: bool, target: Target):
    if aim:
        for name in case.path_parameters or {}:
            if name in target.real:
                case.path_parameters[name] = target.real[name]
        if case.path == "/api/v1/pipelines" and isinstance(case.body, dict):
            case.body["image"] = "busybox"  # a shipped definition: the pipeline starts
    response = case.call(
        base_url=target.server.url,
        headers=target.headers(case.path),
        verify=str(target.server.server_settings.cert_path),
        timeout=30,
    )
    checks: list[CheckFunction] = [not_a_server_error]
    if 200 <= response.status_code < 300:
        checks.append(response_schema_conformance)
    case.validate_response(response, checks=checks)
    if case.path == "/api/v1/pipelines":
        target.pipeline_answers.add(response.status_code)
    if case.path.endswith("/revoke"):
        target.after(case.path, response.status_code, response.json())


def test_the_pipelines_route_was_fuzzed_with_temporal_up(target: Target) -> None:
    """Runs after the fuzz run: pipelines were started (202, their answers matching the
    schema above) and no request met a dead Temporal."""
    print(f"POST /api/v1/pipelines answered {sorted(target.pipeline_answers)}")
    assert 202 in target.pipeline_answers and 503 not in target.pipeline_answers
