"""Inputs and results of the pipeline workflow and its activities (one model each)."""

from pydantic import BaseModel

from core.arch import LxdArch
from core.models import ArchFiles, AssessmentState, ImageSpec, Serial, VersionState


class PipelineInput(BaseModel):
    image: ImageSpec
    serial: Serial


def pipeline_workflow_id(image: ImageSpec, serial: str) -> str:
    """One workflow per image version, so a second trigger finds the first."""
    return f"icefloe:{image.name}:{serial}"


class BuildInput(BaseModel):
    image: ImageSpec
    serial: Serial
    arch: LxdArch


class PublishInput(BaseModel):
    image: ImageSpec
    serial: Serial
    arches: list[ArchFiles]
    workflow_id: str


class TestInput(BaseModel):
    image: ImageSpec
    serial: Serial
    arch: LxdArch
    fingerprint: str
    workflow_id: str


class CheckOutcome(BaseModel):
    check: str
    state: AssessmentState
    evidence: str = ""
    duration_s: float = 0.0
    skipped: bool = False  # passed in an earlier run; not run again


class ArchTestResult(BaseModel):
    arch: LxdArch
    host: str
    checks: list[CheckOutcome]

    @property
    def passed(self) -> bool:
        return all(c.state == AssessmentState.passed for c in self.checks)


class PromoteInput(BaseModel):
    image: ImageSpec
    serial: Serial
    workflow_id: str


class PipelineResult(BaseModel):
    image: str
    serial: str
    state: VersionState
    tests: list[ArchTestResult]
    message: str
