"""A notice as the bytes a receiver gets: a CloudEvents 1.0 structured JSON event, or a
Slack-style `{"text": ...}`, and the HMAC-SHA256 signature of those bytes."""

import hashlib
import hmac
import json
from datetime import datetime
from typing import Any

from core.notices import EVENT_ID_HEADER, SIGNATURE_HEADER, HookFormat, NoticeKind

TYPE_PREFIX = "org.icefloe."


def sign(secret: str, body: bytes) -> str:
    """`sha256=<hex>`, as GitHub's webhooks sign: receivers compare it in constant time."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def cloudevent(
    event_id: str,
    source: str,
    kind: NoticeKind,
    image: str,
    serial: str | None,
    at: datetime,
    data: dict[str, Any],
) -> dict[str, Any]:
    return {
        "specversion": "1.0",
        "id": event_id,
        "source": source,
        "type": TYPE_PREFIX + kind.value,
        "subject": "/".join(p for p in (image, serial) if p) or str(data.get("refresh_id", "")),
        "time": at.isoformat().replace("+00:00", "Z"),
        "datacontenttype": "application/json",
        "data": {"image": image, "serial": serial, **data},
    }


def slack_text(event: dict[str, Any]) -> str:
    """One line: what happened to which version, and the event's own words if it has any."""
    said = event["data"].get("reason") or event["data"].get("summary") or ""
    kind = event["type"].removeprefix(TYPE_PREFIX)
    return f"icefloe {kind}: {event['subject']}" + (f": {said}" if said else "")


def render(event: dict[str, Any], fmt: HookFormat, secret: str) -> tuple[str, dict[str, str]]:
    """The body and the headers of a delivery."""
    payload: dict[str, Any] = (
        event if fmt == HookFormat.cloudevents else {"text": slack_text(event)}
    )
    body = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    content_type = (
        "application/cloudevents+json" if fmt == HookFormat.cloudevents else "application/json"
    )
    return body, {
        "Content-Type": content_type,
        EVENT_ID_HEADER: event["id"],
        SIGNATURE_HEADER: sign(secret, body.encode()),
    }
