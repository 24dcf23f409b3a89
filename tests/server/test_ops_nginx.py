"""Behind the project's nginx (deploy/nginx), with public feeds off: a Prometheus-style scrape
with its bearer header and a sign-in through the form reach the server as they do without it."""

from pathlib import Path

import httpx
import pytest

from harness.front import nginx_front
from harness.servers import RunningServer, token
from tests.support import form_token, sign_in

pytestmark = pytest.mark.nginx


def test_metrics_and_forms_through_nginx(tmp_path: Path):
    with (
        RunningServer(tmp_path / "server", accel_redirect=True, public_feeds=False) as server,
        nginx_front(server, tmp_path / "nginx") as front,
        httpx.Client(base_url=front.url, verify=front.trust()) as c,
    ):
        assert c.get("/metrics").status_code == 401
        scrape = c.get("/metrics", headers={"Authorization": f"Bearer {token(server, 'metrics')}"})
        assert scrape.status_code == 200 and "icefloe_http_requests" in scrape.text
        assert c.get("/openapi.json").status_code == 401
        assert c.post("/login", data={"token": server.token}).status_code == 403
        assert sign_in(c, token(server, "reader"), "/docs").status_code == 303
        assert c.get("/openapi.json").status_code == 200
        shown = form_token(c.get("/").text)
        assert c.post("/logout", data={"form_token": shown}).status_code == 303
