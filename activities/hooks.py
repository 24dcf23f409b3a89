"""Webhook activities (control worker): send a delivery and report each attempt to the
server (`icefloe hook deliveries` shows them), and record a workflow's event as a notice."""

import httpx
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.errors import image_server_errors
from clients.catalog import CatalogClient, CatalogRejected
from clients.receivers import DeliveryFailed, TargetRefused, post, target_address
from core.config import Settings
from core.notices import (
    AttemptReport,
    Delivered,
    DeliveryInput,
    DeliveryState,
    NoticeCreate,
    NoticeView,
)

REFUSED = "DeliveryRefused"  # not retried: the target is refused, or the hook is gone


class HookActivities:
    def __init__(self, catalog: CatalogClient, settings: Settings) -> None:
        self.catalog = catalog
        self.settings = settings

    def _report(self, delivery_id: int, report: AttemptReport) -> None:
        """Tell the server; a removed hook ends the delivery, the server unreachable does not
        (the attempt's own outcome decides whether it is retried)."""
        try:
            self.catalog.report_delivery(delivery_id, report)
        except CatalogRejected as exc:
            raise ApplicationError(str(exc), type=REFUSED, non_retryable=True) from None
        except httpx.HTTPError as exc:  # the server unreachable or failing: logged only
            activity.logger.warning("delivery %s not reported: %s", delivery_id, exc)

    @activity.defn
    def deliver(self, inp: DeliveryInput) -> Delivered:
        """One attempt. A refused target fails for good; any other failure is retried."""
        attempt = activity.info().attempt
        try:
            address = target_address(inp.url, self.settings.hooks_allow_local_targets)
            status = post(
                inp.url,
                inp.body,
                inp.headers,
                inp.retries.timeout_s,
                self.settings.hooks_ca,
                address,
            )
        except TargetRefused as exc:
            self._report(inp.delivery_id, _failed(DeliveryState.failed, attempt, exc))
            raise ApplicationError(str(exc), type=REFUSED, non_retryable=True) from None
        except DeliveryFailed as exc:
            self._report(inp.delivery_id, _failed(DeliveryState.failing, attempt, exc))
            raise ApplicationError(str(exc), type="DeliveryFailed") from None
        return Delivered(attempt=attempt, status=status)

    @activity.defn
    def report_delivery(self, delivery_id: int, report: AttemptReport) -> None:
        """The final outcome; a delivery the server no longer knows is no matter."""
        with image_server_errors():
            try:
                self.catalog.report_delivery(delivery_id, report)
            except CatalogRejected as exc:
                if exc.status_code not in (404, 410):
                    raise

    @activity.defn
    def record_notice(self, req: NoticeCreate) -> NoticeView:
        """A workflow's event (machinery failed, no worker, a refresh's report), once per key."""
        with image_server_errors():
            return self.catalog.record_notice(req)


def _failed(state: DeliveryState, attempt: int, exc: Exception) -> AttemptReport:
    status = exc.status if isinstance(exc, DeliveryFailed) else None
    return AttemptReport(state=state, attempt=attempt, status=status, error=str(exc)[:2000])
