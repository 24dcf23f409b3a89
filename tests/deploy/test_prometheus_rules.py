"""The alert rules in deploy/prometheus/ as Prometheus would load them, and their unit tests
(a version failing, machinery failing, checks stuck, a worker missing, deliveries failing, an
image not refreshed for two days), run by Debian's promtool (deploy/setup-host installs it)."""

import shutil
import subprocess

import pytest

from core.config import REPO_DIR

pytestmark = pytest.mark.promtool

RULES = REPO_DIR / "deploy" / "prometheus"


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    program = shutil.which("promtool")
    assert program, "promtool is missing: deploy/setup-host --role dev installs Debian's prometheus"
    return subprocess.run(
        [program, *args], cwd=RULES, capture_output=True, text=True, timeout=120, check=False
    )


def test_the_rules_pass_promtool_check_rules() -> None:
    done = promtool("check", "rules", "icefloe.rules.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 6 rules found" in done.stdout


def test_the_rules_pass_their_unit_tests() -> None:
    done = promtool("test", "rules", "icefloe.test.yml")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout
