"""LXD as the tests and benchmarks drive it: the test activity's launch of a version in
testing and its whole suite (`check_in_testing`), and the `lxc` CLI with a config of its own
(`Lxc`, subclassed for `incus`)."""

import json
import os
import shutil
import subprocess
from pathlib import Path

import pylxd

from activities.lxd_test.checks import suite
from activities.lxd_test.instances import LaunchSpec, forget_image, launch_spec
from activities.lxd_test.suite import run_suite
from clients.catalog import CatalogClient, server_ca
from core.catalog import AssessmentState, Channel
from core.config import Settings
from core.pipeline import CheckOutcome
from core.spec import ImageSpec, Privilege


def launch_in_testing(
    catalog: CatalogClient,
    settings: Settings,
    image: ImageSpec,
    serial: str,
    fingerprint: str,
    *,
    arch: str = "x86_64",
    kind: Privilege = Privilege.unprivileged,
    workflow: str = "test-workflow",
    temporal: str = "tests",
) -> LaunchSpec:
    """How the test activity launches a version in testing: by fingerprint, from a fresh URL."""
    ca = server_ca(settings)
    assert ca is not None
    return launch_spec(
        image.name,
        serial,
        arch,
        kind,
        server_url=catalog.channel_url(Channel.testing, fresh=fingerprint[:16]),
        fingerprint=fingerprint,
        certificate=ca.read_text(),
        workflow=workflow,
        temporal=temporal,
    )


def check_in_testing(
    lxd: pylxd.Client,
    catalog: CatalogClient,
    settings: Settings,
    image: ImageSpec,
    serial: str,
    fingerprint: str,
    arch: str,
) -> list[CheckOutcome]:
    """The test step for one arch, the way the test activity does it: launch the
    version in testing by fingerprint, run the image's whole suite, forget the cached image.
    The finished outcomes, every one passed (else AssertionError with the evidence)."""
    spec = launch_in_testing(
        catalog,
        settings,
        image,
        serial,
        fingerprint,
        arch=arch,
        kind=image.privileges[0],
        workflow="bench",
        temporal="bench",
    )
    seen: list[CheckOutcome] = []
    try:
        run_suite(lxd, spec, suite(image.checks), seen.append, lambda _: None)
    finally:
        forget_image(lxd, fingerprint)
    done = [o for o in seen if o.state != AssessmentState.running]
    failed = {o.check: o.evidence for o in done if o.state == AssessmentState.failed}
    assert not failed, f"checks failed: {failed}"
    return done


class Lxc:
    """The `lxc` CLI with its own config directory (remotes and pinned certificates)."""

    program = "lxc"
    cache = Path("/var/cache/lxd")  # the daemon's copy of each remote's feed, by sha256(URL)

    def __init__(self, conf: Path) -> None:
        self.env = os.environ | {"LXD_CONF": str(conf), "LXC_CONF": str(conf)}
        self.conf = conf
        # Images a test had copied or launched, which the `lxc` fixture deletes afterwards
        # (only these: the daemon is shared with other tests and concurrent runs).
        self.took: set[str] = set()

    def __call__(self, *args: str, timeout: float = 120) -> str:
        r = subprocess.run(
            [self.program, *args], capture_output=True, text=True, env=self.env, timeout=timeout
        )
        assert r.returncode == 0, f"{self.program} {' '.join(args)}: {r.stderr.strip()}"
        return r.stdout

    def quietly(self, *args: str) -> None:
        """A clean-up step: something already gone is no failure."""
        subprocess.run([self.program, *args], env=self.env, capture_output=True, timeout=120)

    def add_remote(self, name: str, url: str, cert: Path) -> None:
        (self.conf / "servercerts").mkdir(parents=True, exist_ok=True)
        shutil.copy(cert, self.conf / "servercerts" / f"{name}.crt")
        self("remote", "add", name, url, "--protocol", "simplestreams")

    def images(self, remote: str) -> dict[str, list[str]]:
        """fingerprint -> aliases of every image the remote lists."""
        listed = json.loads(self("image", "list", f"{remote}:", "--format", "json"))
        return {i["fingerprint"]: [a["name"] for a in i["aliases"] or []] for i in listed}
