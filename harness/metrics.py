"""Prometheus scrapes of the image server, compared before and after what a test did:
the session's server counts every earlier test too."""

import re

from harness.servers import RunningServer, http


def scrape(server: RunningServer) -> str:
    with http(server) as c:
        r = c.get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    return r.text


def value(text: str, series: str) -> float:
    found = re.search(rf"^{re.escape(series)} (\S+)$", text, re.M)
    assert found, f"no series {series}"
    return float(found[1])


def increase(before: str, after: str, series: str) -> float:
    """How much `series` grew between two scrapes (a series not there yet counts as 0)."""
    old = re.search(rf"^{re.escape(series)} (\S+)$", before, re.M)
    return value(after, series) - (float(old[1]) if old else 0.0)
