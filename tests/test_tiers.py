"""One definition of the test tiers: the fast tier in pyproject.toml's addopts is every
registered marker negated, deploy/test overrides it to run all, the README says both, and a
test that uses a real part's fixture without its marker stops the collection."""

import tomllib

import pytest

from core.config import REPO_DIR
from tests.conftest import NEEDS, missing_markers

pytest_plugins = ["pytester"]

PYTEST = tomllib.loads((REPO_DIR / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]
MARKERS = [line.partition(":")[0] for line in PYTEST["markers"]]
FAST = PYTEST["addopts"][PYTEST["addopts"].index("-m") + 1]


def test_the_fast_tier_is_the_tests_without_a_marker_and_markers_are_strict() -> None:
    assert " and ".join(f"not {m}" for m in MARKERS) == FAST
    assert "--strict-markers" in PYTEST["addopts"]
    assert set().union(*NEEDS.values()) <= set(MARKERS)


def test_deploy_test_runs_every_tier() -> None:
    lines = (REPO_DIR / "deploy/test").read_text().splitlines()
    assert [x for x in lines if "bin/pytest" in x] == ['exec "$REPO/.venv/bin/pytest" -m "" "$@"']


def test_the_readme_says_what_pyproject_and_deploy_test_do() -> None:
    readme = (REPO_DIR / "README.md").read_text().replace("\n", " ")
    assert f'`-m "{FAST}"`' in readme
    assert '`pytest -m ""`' in readme
    assert [m for m in MARKERS if f"`{m}`" not in readme] == []


def test_a_fixture_of_a_real_part_asks_for_its_markers() -> None:
    assert missing_markers({"tmp_path", "workers"}, {"lxd"}) == {"temporal"}
    assert missing_markers({"workers"}, {"lxd", "temporal", "slow"}) == set()
    assert missing_markers({"tmp_path", "image_server"}, ()) == set()


def test_a_test_without_the_marker_its_fixture_needs_stops_the_collection(
    pytester: pytest.Pytester,
) -> None:
    pytester.makepyfile(
        test_unmarked="def test_unmarked(temporal):\n    pass\n",
        test_marked="import pytest\n\n@pytest.mark.temporal\ndef test_marked(temporal): pass\n",
    )
    done = pytester.runpytest_inprocess(
        "-p", "tests.conftest", "-o", "asyncio_default_fixture_loop_scope=session", "--collect-only"
    )
    assert done.ret == pytest.ExitCode.USAGE_ERROR
    done.stderr.fnmatch_lines(["*test_unmarked.py::test_unmarked: add pytest.mark.temporal"])
    assert "test_marked" not in done.stderr.str()
