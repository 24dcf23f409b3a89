"""A notice as the bytes a receiver gets, and their signature."""

import hashlib
import hmac
import json
from datetime import UTC, datetime

from core.cloudevents import cloudevent, render
from core.notices import EVENT_ID_HEADER, SIGNATURE_HEADER, HookFormat, NoticeKind

AT = datetime(2026, 12, 3, 17, 0, tzinfo=UTC)


def promoted() -> dict:
    data = {"actor": "ops-alice", "forced": True, "reason": "hotfix"}
    return cloudevent(
        "e-1", "https://srv", NoticeKind.version_promoted, "busybox:1.35:default", "s1", AT, data
    )


def test_a_cloudevent_has_the_required_attributes_and_the_data():
    body, headers = render(promoted(), HookFormat.cloudevents, "sekrit")
    event = json.loads(body)
    assert {k: event[k] for k in ("specversion", "id", "source", "type", "subject", "time")} == {
        "specversion": "1.0",
        "id": "e-1",
        "source": "https://srv",
        "type": "org.icefloe.version.promoted",
        "subject": "busybox:1.35:default/s1",
        "time": "2026-12-03T17:00:00Z",
    }
    assert event["data"]["forced"] is True and event["data"]["actor"] == "ops-alice"
    assert headers["Content-Type"] == "application/cloudevents+json"
    assert headers[EVENT_ID_HEADER] == "e-1"
    digest = hmac.new(b"sekrit", body.encode(), hashlib.sha256).hexdigest()
    assert headers[SIGNATURE_HEADER] == f"sha256={digest}"


def test_the_slack_form_is_one_line_of_text_signed_alike():
    body, headers = render(promoted(), HookFormat.slack, "sekrit")
    assert json.loads(body) == {"text": "icefloe version.promoted: busybox:1.35:default/s1: hotfix"}
    assert headers[EVENT_ID_HEADER] == "e-1" and headers[SIGNATURE_HEADER].startswith("sha256=")


def test_a_refresh_is_its_own_subject():
    data = {"refresh_id": "icefloe-refresh:1", "summary": "3 active"}
    event = cloudevent("e-2", "s", NoticeKind.refresh_finished, "", None, AT, data)
    assert event["subject"] == "icefloe-refresh:1"
