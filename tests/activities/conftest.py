"""The LXD client the activity tests share, with the test project in place."""

import pylxd
import pytest

from activities.lxd_test.instances import ensure_project
from clients.lxd import connect_lxd
from core.config import Settings


@pytest.fixture(scope="module")
def lxd(settings: Settings) -> pylxd.Client:
    ensure_project(connect_lxd(settings), settings.lxd_project)
    return connect_lxd(settings)
