"""A typed client for the image server's API, used by activities and the CLI."""

import ssl
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx

from core.catalog import (
    AbandonRequest,
    AssessmentReport,
    BuiltFile,
    EventView,
    GateView,
    GcRequest,
    GcResult,
    HoldRequest,
    HoldView,
    ImageCheckReport,
    ImageChecksView,
    ImageCheckView,
    KnownFailureCreate,
    KnownFailureView,
    RevokeRequest,
    RevokeResult,
    TransitionRequest,
    VersionCreate,
    VersionPackages,
    VersionState,
    VersionView,
)
from core.config import Settings
from core.notices import AttemptReport, NoticeCreate, NoticeView

CHUNK = 1 << 20


class CatalogRejected(Exception):
    """The server refused the request (4xx); retrying the same request will not help."""

    def __init__(self, status_code: int, message: str) -> None:
        super().__init__(f"image server said {status_code}: {message}")
        self.status_code = status_code


class VersionUnchanged(CatalogRejected):
    """Publishing refused (409): the version's packages and definition equal those of
    `unchanged_since`, the image's newest active version. `VersionCreate.force` overrides."""

    def __init__(self, unchanged_since: str, message: str) -> None:
        super().__init__(409, message)
        self.unchanged_since = unchanged_since


class ImageHeld(CatalogRejected):
    """A promotion refused (409): an operator holds the image (`icefloe hold`)."""


def _answer(response: httpx.Response) -> dict[str, object]:
    """A refusal's JSON object (`detail` and any more fields); empty if it is not one."""
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def server_ca(settings: Settings) -> Path | None:
    """ICEFLOE_SERVER_CA, else the local stack's self-signed certificate if there is one,
    else none (the system CAs)."""
    if settings.server.ca:
        return settings.server.ca
    local = settings.state_dir / "tls" / "server.crt"
    return local if local.exists() else None


def publisher_token(settings: Settings) -> str | None:
    """ICEFLOE_PUBLISHER_TOKEN, else the one the local stack keeps in its state dir."""
    if settings.publisher_token:
        return settings.publisher_token.get_secret_value()
    local = settings.state_dir / "publisher.token"
    return local.read_text().strip() if local.exists() else None


class CatalogClient:
    def __init__(self, settings: Settings, timeout: float = 60.0, token: str | None = None) -> None:
        """`token` overrides the settings' publisher token (e.g. an operator's, for gc)."""
        token = token or publisher_token(settings)
        ca = server_ca(settings)
        self.base_url = settings.server.url.rstrip("/")
        self._http = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {token}"} if token else {},
            verify=ssl.create_default_context(cafile=ca) if ca else True,
            timeout=timeout,
            # Drop idle connections before the server does (uvicorn: 5 s): reusing one the
            # server is closing fails a request with "Server disconnected" (bench/chaos.py).
            limits=httpx.Limits(keepalive_expiry=2.0),
        )

    def channel_url(self, channel: str, fresh: str | None = None) -> str:
        """Base URL of a channel feed, as LXD hosts use it; `fresh` bypasses LXD's cache."""
        url = f"{self.base_url}/channels/{channel}"
        return f"{url}/fresh/{fresh}" if fresh else url

    def close(self) -> None:
        self._http.close()

    def _check(self, response: httpx.Response) -> httpx.Response:
        if response.is_client_error:
            answer = _answer(response)
            detail = str(answer.get("detail", response.text))
            if response.status_code == 409 and answer.get("held_by"):
                raise ImageHeld(409, detail)
            raise CatalogRejected(response.status_code, detail)
        response.raise_for_status()
        return response

    def upload(
        self, path: Path, file: BuiltFile, progress: Callable[[int], None] = lambda _: None
    ) -> bool:
        """Stream one file; skipped when the server already has the content. True if sent."""
        url = f"/api/v1/files/{file.sha256}"
        if self._http.head(url).status_code == 200:
            return False

        def body() -> Iterator[bytes]:
            sent = 0
            with path.open("rb") as f:
                while block := f.read(CHUNK):
                    sent += len(block)
                    progress(sent)
                    yield block

        self._check(
            self._http.put(
                url,
                params={"size": file.size},
                content=body(),
                headers={"Content-Length": str(file.size)},
            )
        )
        return True

    def publish(self, req: VersionCreate) -> VersionView:
        """VersionUnchanged if the server's second guard finds it equal to the newest active."""
        r = self._http.post("/api/v1/versions", json=req.model_dump(mode="json"))
        if r.status_code == 409 and (since := _answer(r).get("unchanged_since")):
            raise VersionUnchanged(str(since), str(_answer(r).get("detail", r.text)))
        return VersionView.model_validate_json(self._check(r).content)

    def newest_active(self, image: str) -> VersionView | None:
        """The version a new one is compared with to tell whether anything changed."""
        r = self._http.get(
            "/api/v1/versions",
            params={"image": image, "state": "active", "limit": 1, "newest_first": "true"},
        )
        rows = [VersionView.model_validate(v) for v in self._check(r).json()]
        return rows[0] if rows else None

    def record_check(self, image: str, report: ImageCheckReport) -> ImageCheckView:
        """Say the image was checked now and found unchanged since `report.unchanged_since`."""
        r = self._http.put(f"/api/v1/images/{image}/check", json=report.model_dump(mode="json"))
        return ImageCheckView.model_validate_json(self._check(r).content)

    def image_check(self, image: str) -> ImageCheckView | None:
        """The image's newest check that found it unchanged; None if it has none."""
        r = self._http.get(f"/api/v1/images/{image}/check")
        if r.status_code == 404:
            return None
        return ImageCheckView.model_validate_json(self._check(r).content)

    def version(self, image: str, serial: str) -> VersionView:
        r = self._http.get(f"/api/v1/images/{image}/versions/{serial}")
        return VersionView.model_validate_json(self._check(r).content)

    def manifest(self, image: str, serial: str) -> VersionPackages:
        """Each arch's packages and what changed since the image's previous version."""
        r = self._http.get(f"/api/v1/images/{image}/versions/{serial}/manifest")
        return VersionPackages.model_validate_json(self._check(r).content)

    def transition(self, image: str, serial: str, req: TransitionRequest) -> VersionView:
        r = self._http.post(
            f"/api/v1/images/{image}/versions/{serial}/transitions",
            json=req.model_dump(mode="json"),
        )
        return VersionView.model_validate_json(self._check(r).content)

    def revoke(self, image: str, serial: str, reason: str) -> RevokeResult:
        """Take the version out of every feed (operator); and what was restored instead."""
        r = self._http.post(
            f"/api/v1/images/{image}/versions/{serial}/revoke",
            json=RevokeRequest(reason=reason).model_dump(),
        )
        return RevokeResult.model_validate_json(self._check(r).content)

    def hold(self, image: str, reason: str) -> HoldView:
        r = self._http.put(
            f"/api/v1/images/{image}/hold", json=HoldRequest(reason=reason).model_dump()
        )
        return HoldView.model_validate_json(self._check(r).content)

    def release(self, image: str) -> HoldView:
        """Release the image's hold; the hold released."""
        r = self._http.delete(f"/api/v1/images/{image}/hold")
        return HoldView.model_validate_json(self._check(r).content)

    def hold_of(self, image: str) -> HoldView | None:
        """The image's hold; None if it is not held (or not known yet)."""
        r = self._http.get(f"/api/v1/images/{image}/hold")
        if r.status_code == 404:
            return None
        return HoldView.model_validate_json(self._check(r).content)

    def record(self, image: str, serial: str, report: AssessmentReport) -> None:
        r = self._http.put(
            f"/api/v1/images/{image}/versions/{serial}/assessments",
            json=report.model_dump(mode="json"),
        )
        self._check(r)

    def missing_checks(self, image: str, serial: str) -> dict[str, list[str]]:
        r = self._http.get(f"/api/v1/images/{image}/versions/{serial}/missing-checks")
        return self._check(r).json()

    def gate(self, image: str, serial: str) -> GateView:
        """What still keeps the version from active, and the known failures that let it."""
        r = self._http.get(f"/api/v1/images/{image}/versions/{serial}/gate")
        return GateView.model_validate_json(self._check(r).content)

    def add_known_failure(self, req: KnownFailureCreate) -> KnownFailureView:
        r = self._http.post("/api/v1/known-failures", json=req.model_dump(mode="json"))
        return KnownFailureView.model_validate_json(self._check(r).content)

    def known_failures(self, image: str | None = None) -> list[KnownFailureView]:
        params = {"image": image} if image else {}
        r = self._http.get("/api/v1/known-failures", params=params)
        return [KnownFailureView.model_validate(k) for k in self._check(r).json()]

    def remove_known_failure(self, failure_id: int) -> KnownFailureView:
        r = self._http.delete(f"/api/v1/known-failures/{failure_id}")
        return KnownFailureView.model_validate_json(self._check(r).content)

    def check_rates(self, image: str, versions: int = 20) -> ImageChecksView:
        r = self._http.get(f"/api/v1/images/{image}/checks", params={"versions": versions})
        return ImageChecksView.model_validate_json(self._check(r).content)

    def versions(
        self, state: VersionState | None = None, image: str | None = None
    ) -> list[VersionView]:
        params = {k: v for k, v in (("state", state), ("image", image)) if v is not None}
        r = self._http.get("/api/v1/versions", params=params)
        return [VersionView.model_validate(v) for v in self._check(r).json()]

    def events(self, image: str, serial: str) -> list[EventView]:
        r = self._http.get(f"/api/v1/images/{image}/versions/{serial}/events")
        return [EventView.model_validate(e) for e in self._check(r).json()]

    def abandon_running(self, image: str, serial: str, older_than_s: int) -> int:
        """Fail running results not updated for `older_than_s`; returns how many."""
        r = self._http.post(
            f"/api/v1/images/{image}/versions/{serial}/assessments/abandon-running",
            json=AbandonRequest(older_than_s=older_than_s).model_dump(),
        )
        return int(self._check(r).json())

    def gc(self, grace_s: int) -> GcResult:
        """Delete files of versions inactive longer than `grace_s` (needs an operator token)."""
        r = self._http.post("/api/v1/gc", json=GcRequest(grace_s=grace_s).model_dump())
        return GcResult.model_validate_json(self._check(r).content)

    def record_notice(self, req: NoticeCreate) -> NoticeView:
        """A workflow's event; the same key again is recorded once."""
        r = self._http.post("/api/v1/notices", json=req.model_dump(mode="json"))
        return NoticeView.model_validate_json(self._check(r).content)

    def report_delivery(self, delivery_id: int, report: AttemptReport) -> None:
        """An attempt's outcome; CatalogRejected(410) once the delivery's hook is removed."""
        r = self._http.post(
            f"/api/v1/deliveries/{delivery_id}/attempts", json=report.model_dump(mode="json")
        )
        self._check(r)
