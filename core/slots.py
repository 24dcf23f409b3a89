"""What an arch worker tells a pipeline while its work waits for a slot (workers/arch.py runs
at most ICEFLOE_WORKER_MAX_BUILDS builds and ICEFLOE_WORKER_MAX_TESTS test instances at once)."""

from typing import Literal

from pydantic import BaseModel, Field

from core.arch import LxdArch

SlotKind = Literal["build", "test"]
# The pipeline's signal; the worker names it without importing the workflow.
SLOT_WAIT_SIGNAL = "slot_wait"


class SlotWait(BaseModel):
    """`waiting`: the arch's activity waits, `ahead` others before it; false: it got its slot."""

    arch: LxdArch
    kind: SlotKind
    waiting: bool
    ahead: int = Field(0, ge=0)

    @property
    def text(self) -> str:
        return f"{self.arch}: {self.kind} slot: {self.ahead} ahead"
