"""Build with distrobuilder (or Canonical's fork, lxd-imagebuilder) from the YAML image
definition carried in the spec, when the worker host has the tool. A plain function."""

import shutil
import tempfile
from pathlib import Path

import yaml

from activities.builders.base import BuildJob, Built, HostDirs
from activities.builders.errors import BuildError
from activities.builders.image_files import (
    METADATA_NAME,
    ROOTFS_NAME,
    checked_inputs,
    collect,
    squashfs_packages,
    stream_tool,
)

TOOLS = ("distrobuilder", "lxd-imagebuilder")


def find_tool() -> str:
    """The first of TOOLS in PATH; BuildError at once, naming them, when neither is."""
    for tool in TOOLS:
        if path := shutil.which(tool):
            return path
    raise BuildError(
        f"builder distrobuilder needs {' or '.join(TOOLS)} on this worker host, "
        "and neither is in PATH: install one (e.g. `snap install distrobuilder --classic`)"
    )


def build_distrobuilder(job: BuildJob, _: HostDirs) -> Built:
    """`build-lxd --type=split`, with serial, arch and names from the spec overriding the
    definition's, so metadata.yaml carries the same properties as every other builder's;
    the manifest lists what the rootfs's dpkg database does (empty without one)."""
    image, arch, serial, progress = job.spec, job.arch, job.serial, job.progress
    debian_arch = checked_inputs(arch, serial)
    tool = find_tool()
    out_dir = job.out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".build-distrobuilder-", dir=out_dir) as tmp:
        work = Path(tmp)
        definition = work / "image.yaml"
        definition.write_text(yaml.safe_dump(image.distrobuilder))
        overrides = {
            "image.distribution": image.os,
            "image.release": image.release,
            "image.variant": image.variant,
            "image.architecture": debian_arch,
            "image.serial": serial,
        }
        stream_tool(
            [
                tool,
                "build-lxd",
                str(definition),
                str(work / "out"),
                "--type=split",
                "--compression=xz",
                *(arg for k, v in overrides.items() for arg in ("-o", f"{k}={v}")),
            ],
            f"{arch}: {Path(tool).name}",
            progress,
        )
        rootfs = work / "out" / ROOTFS_NAME
        # The rootfs's dpkg database, if it has one; other package managers' are not read
        # yet: their images get an empty manifest.
        packages = squashfs_packages(rootfs, work)
        return collect(arch, work / "out" / METADATA_NAME, rootfs, packages, out_dir, progress)
