"""How the `init` check reads systemctl's answers right after an instance (re)starts: the
messages are those of bookworm's systemd 252 and trixie's 257 on this machine's LXD."""

import pytest

from activities.lxd_test.checks import bus_not_up
from activities.lxd_test.execs import ExecResult

pytestmark: list[pytest.MarkDecorator] = []

OLD = "Failed to connect to bus: No such file or directory\n"
NEW = "Failed to connect to system scope bus via local transport: No such file or directory\n"


@pytest.mark.parametrize("stderr", [OLD, NEW])
def test_no_bus_yet_is_asked_again_in_either_wording(stderr: str) -> None:
    """trixie's reboot check once failed 0.2 s after the restart with "systemd: ?": its
    systemd words the error the new way, which only the old wording was asked again for."""
    assert bus_not_up(ExecResult(code=1, stdout="", stderr=stderr))


@pytest.mark.parametrize(
    "answer",
    [
        ExecResult(code=1, stdout="degraded\n", stderr=""),
        ExecResult(code=0, stdout="running\n", stderr=""),
        ExecResult(code=1, stdout="offline\n", stderr=NEW),
        ExecResult(code=1, stdout="", stderr="System has not been booted with systemd\n"),
    ],
)
def test_a_state_or_another_error_is_the_answer(answer: ExecResult) -> None:
    assert not bus_not_up(answer)
