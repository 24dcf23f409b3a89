"""Notifications: what happened (a notice, one per event, with an id receivers de-duplicate
by), who wants to hear of it (a hook: a URL, the events, a format), and each delivery of a
notice to a hook, which a Temporal workflow retries for a day or more until it lands."""

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field

SIGNATURE_HEADER = "X-Icefloe-Signature"
EVENT_ID_HEADER = "X-Icefloe-Event-Id"


class NoticeKind(StrEnum):
    version_testing = "version.testing"
    version_promoted = "version.promoted"
    check_failed = "check.failed"
    machinery_failed = "machinery.failed"
    worker_missing = "worker.missing"
    version_expired = "version.expired"
    version_revoked = "version.revoked"
    version_restored = "version.restored"
    refresh_finished = "refresh.finished"


# What workflows report through `POST /api/v1/notices`; the others the server records itself
# in the transaction of the change they tell of.
WORKFLOW_KINDS = frozenset(
    {NoticeKind.machinery_failed, NoticeKind.worker_missing, NoticeKind.refresh_finished}
)


class HookFormat(StrEnum):
    """cloudevents: a CloudEvents 1.0 JSON event; slack: `{"text": ...}` for Slack-like
    incoming webhooks (the event id is in the X-Icefloe-Event-Id header either way)."""

    cloudevents = "cloudevents"
    slack = "slack"


class DeliveryState(StrEnum):
    """pending: not tried yet; failing: tried, being retried; delivered; failed: given up
    (the target was refused, the retries ran out or the hook was removed)."""

    pending = "pending"
    failing = "failing"
    delivered = "delivered"
    failed = "failed"


Key = Annotated[str, Field(min_length=1, max_length=200)]


class NoticeCreate(BaseModel):
    """An event a workflow saw; the same `key` again records nothing new."""

    model_config = ConfigDict(extra="forbid")

    kind: NoticeKind
    image: str = Field(default="", max_length=200, description="empty: a refresh's")
    serial: str | None = Field(default=None, max_length=100)
    data: dict[str, Any] = Field(default_factory=dict)
    key: Key


class NoticeView(BaseModel):
    event_id: str
    kind: NoticeKind
    image: str
    serial: str | None
    at: datetime
    created: bool = Field(description="false: a notice with this key was recorded before")


class HookCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = Field(min_length=1, max_length=2000)
    events: list[str] = Field(
        default_factory=lambda: [k.value for k in NoticeKind],
        min_length=1,
        max_length=50,
        description="the event names (NoticeKind values); default: every event",
    )
    format: HookFormat = HookFormat.cloudevents


class HookView(BaseModel):
    """A hook as listed: never its secret."""

    id: int
    url: str
    events: list[NoticeKind]
    format: HookFormat
    created_by: str
    created_at: datetime


class HookIssued(HookView):
    secret: str = Field(
        description="shown this once: signs every delivery (HMAC-SHA256 of the body, "
        "X-Icefloe-Signature); the server keeps it to sign, and never serves it again"
    )


class DeliveryView(BaseModel):
    id: int
    hook_id: int
    event_id: str
    kind: NoticeKind
    image: str
    serial: str | None
    state: DeliveryState
    attempts: int
    last_status: int | None
    last_error: str
    created_at: datetime
    updated_at: datetime


class Retries(BaseModel):
    """How a delivery is retried: from `initial_s`, doubling up to `maximum_s`, for `for_s`."""

    initial_s: float
    maximum_s: float
    for_s: float
    timeout_s: float


class DeliveryInput(BaseModel):
    """What the delivery workflow sends: the signed body is made by the server, which keeps
    the hook's secret, so no secret is ever in a workflow's history."""

    delivery_id: int
    hook_id: int
    event_id: str
    url: str
    body: str
    headers: dict[str, str]
    retries: Retries


class AttemptReport(BaseModel):
    """One attempt's outcome, as the delivery activity reports it to the server."""

    model_config = ConfigDict(extra="forbid")

    state: DeliveryState
    attempt: int | None = Field(default=None, ge=1, description="unset: the count is kept")
    status: int | None = None
    error: str = Field(default="", max_length=2000)


class Delivered(BaseModel):
    attempt: int
    status: int
