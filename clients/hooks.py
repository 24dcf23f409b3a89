"""Webhook subscriptions through the image server's API (operator token): `icefloe hook`."""

from clients.catalog import CatalogClient
from core.notices import DeliveryView, HookCreate, HookIssued, HookView


class HooksClient(CatalogClient):
    def add_hook(self, req: HookCreate) -> HookIssued:
        r = self._http.post("/api/v1/hooks", json=req.model_dump(mode="json"))
        return HookIssued.model_validate_json(self._check(r).content)

    def hooks(self) -> list[HookView]:
        return [
            HookView.model_validate(h) for h in self._check(self._http.get("/api/v1/hooks")).json()
        ]

    def remove_hook(self, hook_id: int) -> HookView:
        r = self._http.delete(f"/api/v1/hooks/{hook_id}")
        return HookView.model_validate_json(self._check(r).content)

    def deliveries(self, hook_id: int, limit: int = 50) -> list[DeliveryView]:
        r = self._http.get(f"/api/v1/hooks/{hook_id}/deliveries", params={"limit": limit})
        return [DeliveryView.model_validate(d) for d in self._check(r).json()]
