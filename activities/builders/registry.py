"""Every builder by the name an image definition's `builder:` gives: adding one (mkosi, a VM
builder) is a new module with a `Builder` function and one line here."""

from activities.builders.base import Builder
from activities.builders.busybox import build_busybox
from activities.builders.debootstrap import build_debootstrap
from activities.builders.distrobuilder import build_distrobuilder

BUILDERS: dict[str, Builder] = {
    "busybox": build_busybox,
    "debootstrap": build_debootstrap,
    "distrobuilder": build_distrobuilder,
}
