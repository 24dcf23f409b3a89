"""Find and delete test instances a crashed worker left behind. No Temporal here: the
caller says which workflows still run (an instance of a running workflow is its retry's
business: the retry replaces it by name)."""

from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime

import pylxd

from activities.lxd_test.instances import LABEL, forget_image, listed, remove


@dataclass(frozen=True)
class Labelled:
    name: str
    temporal: str
    workflow: str
    base_image: str
    age_s: float


def labelled(client: pylxd.Client, temporal: str) -> list[Labelled]:
    """Instances in the client's project owned by a workflow of this Temporal (namespace and
    server, see `temporal_scope`): another Icefloe sharing the LXD project judges its own."""
    now = datetime.now(UTC)
    found = []
    for inst in listed(client):
        workflow = inst.config.get(f"{LABEL}workflow")
        if workflow is None or inst.config.get(f"{LABEL}temporal") != temporal:
            continue
        created = datetime.fromisoformat(inst.created_at.replace("Z", "+00:00"))
        found.append(
            Labelled(
                inst.name,
                temporal,
                workflow,
                inst.config.get("volatile.base_image", ""),
                (now - created).total_seconds(),
            )
        )
    return found


def sweep(
    client: pylxd.Client, found: list[Labelled], running: Collection[str], max_age_s: float
) -> list[str]:
    """Delete instances whose workflow no longer runs, or that are older than max_age_s,
    with their cached images. Returns the names deleted."""
    stale = [i for i in found if i.workflow not in running or i.age_s > max_age_s]
    for inst in stale:
        remove(client, inst.name)
    for image in {i.base_image for i in stale if i.base_image}:
        forget_image(client, image)
    return [i.name for i in stale]
