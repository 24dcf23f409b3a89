"""The LXD client the activity tests share, with the test project in place."""

import pylxd
import pytest

from activities.lxd_test.instances import ensure_project
from clients.lxd import connect_lxd
from core.config import Settings


@pytest.fixture(scope="module")
def lxd(settings: Settings) -> pylxd.Client:
    lxd = connect_lxd(settings)
    ensure_project(lxd, settings.lxd_project)
    return lxd
