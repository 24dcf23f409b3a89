"""The catalogue: every definition file read on its own, each bad one reported with its
file, field and reason while the others stay in; refresh rules; the spec digest."""

import subprocess
import sys
from pathlib import Path

import pytest

from core.catalogue import NIGHTLY, load_catalogue, parse_rule
from core.config import PACKAGED_IMAGES, REPO_DIR
from core.images import ImageDefinitionError, load_image
from core.inputs import spec_digest

BUSYBOX = """\
os: busybox
release: "1.35"
variant: {variant}
arches: [x86_64]
checks: [boots]
"""


def write(where: Path, name: str, text: str) -> Path:
    where.mkdir(exist_ok=True)
    path = where / name
    path.write_text(text)
    return path


def test_shipped_catalogue_has_no_problems() -> None:
    found = load_catalogue(PACKAGED_IMAGES)
    assert found.problems == []
    images = [d.image for d in found.definitions]
    assert "busybox:1.35:default" in images and len(set(images)) == len(images)
    debian = {
        f"debian:{r}:{v}" for r in ("bookworm", "trixie", "sid") for v in ("default", "cloud")
    }
    assert debian <= set(images)
    assert all(d.refresh.text == NIGHTLY for d in found.definitions)


@pytest.mark.parametrize(
    ("text", "field", "reason"),
    [
        ("os: [unclosed\n", "", "not valid YAML"),
        ("- a list\n", "", "expected a mapping"),
        (BUSYBOX.format(variant="a") + "arches: [sparc]\n", "arches.0", "Input should be"),
        (BUSYBOX.format(variant="a") + "colour: blue\n", "colour", "Extra inputs"),
        (BUSYBOX.format(variant="a") + "refresh: sometimes\n", "refresh", "neither a cron"),
        (BUSYBOX.format(variant="a") + "refresh: '61 * * * *'\n", "refresh", "cron minute"),
        (BUSYBOX.format(variant="a") + "allow_failure: maybe\n", "allow_failure", "true or false"),
        (
            BUSYBOX.format(variant="a") + "packages: [curl]\n",
            "definition",
            "for builder debootstrap",
        ),
    ],
)
def test_bad_file_is_reported_and_the_others_stay(
    tmp_path: Path, text: str, field: str, reason: str
) -> None:
    write(tmp_path, "good.yaml", BUSYBOX.format(variant="good"))
    write(tmp_path, "bad.yaml", text)
    write(tmp_path, "notes.txt", "not a definition: ignored")
    found = load_catalogue(tmp_path)
    assert [d.image for d in found.definitions] == ["busybox:1.35:good"]
    (problem,) = found.problems
    assert (problem.file, problem.field) == ("bad.yaml", field)
    assert reason in problem.reason, problem.reason


def test_two_files_claiming_one_image_are_both_left_out(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", BUSYBOX.format(variant="same"))
    write(tmp_path, "b.yml", BUSYBOX.format(variant="same") + "checks: [boots, init]\n")
    write(tmp_path, "c.yaml", BUSYBOX.format(variant="other"))
    found = load_catalogue(tmp_path)
    assert [d.image for d in found.definitions] == ["busybox:1.35:other"]
    assert sorted(p.file for p in found.problems) == ["a.yaml", "b.yml"]
    assert all("claimed by 2 files (a.yaml, b.yml)" in p.reason for p in found.problems)


def test_catalogue_fields_and_rules(tmp_path: Path) -> None:
    write(tmp_path, "a.yaml", BUSYBOX.format(variant="a") + "refresh: every 6h\n")
    write(tmp_path, "b.yaml", BUSYBOX.format(variant="b") + "allow_failure: true\n")
    write(tmp_path, "c.yaml", BUSYBOX.format(variant="c") + "refresh: '@hourly'\n")
    found = load_catalogue(tmp_path, default_refresh="30 1 * * 1-5")
    assert found.problems == []
    assert found.rules() == {
        "every 6h": ["busybox:1.35:a"],
        "30 1 * * 1-5": ["busybox:1.35:b"],
        "0 * * * *": ["busybox:1.35:c"],
    }
    assert [d.allow_failure for d in found.definitions] == [False, True, False]


def test_missing_directory_is_a_problem_not_an_exception(tmp_path: Path) -> None:
    found = load_catalogue(tmp_path / "nowhere")
    assert found.definitions == [] and found.problems[0].reason == "not a directory"


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("0 3 * * *", "0 3 * * *"),
        ("  */15   0-6,22-23 1 1-12/2 0 ", "*/15 0-6,22-23 1 1-12/2 0"),
        ("@daily", NIGHTLY),
        ("every 90m", "every 90m"),
        ("every 120m", "every 2h"),
        ("every 1d", "every 1d"),
    ],
)
def test_refresh_rules(text: str, shown: str) -> None:
    assert parse_rule(text).text == shown


@pytest.mark.parametrize(
    "text",
    [
        "",
        "0 3 * *",
        "0 3 * * * *",
        "60 * * * *",
        "* 24 * * *",
        "* * 0 * *",
        "* * * 13 *",
        "* * * * 7",
        "*/0 * * * *",
        "5-1 * * * *",
        "every 0h",
        "every 5s",
        "nightly",
        "a b c d e",
    ],
)
def test_bad_refresh_rules_say_what_is_wrong(text: str) -> None:
    with pytest.raises(ValueError, match=r"cron|interval"):
        parse_rule(text)


def test_spec_digest_is_the_spec_not_the_file(tmp_path: Path) -> None:
    plain = load_image(write(tmp_path, "a.yaml", BUSYBOX.format(variant="d")))
    reordered = load_image(
        write(
            tmp_path,
            "b.yaml",
            "# a comment\nchecks: [boots]\narches: [x86_64]\nvariant: d\nrelease: '1.35'\n"
            "os: busybox\nrefresh: every 1h\nallow_failure: true\n",
        )
    )
    assert spec_digest(plain) == spec_digest(reordered)
    changed = load_image(
        write(tmp_path, "c.yaml", BUSYBOX.format(variant="d") + "privileged: true\n")
    )
    assert spec_digest(changed) != spec_digest(plain)


def test_load_image_checks_the_catalogue_fields(tmp_path: Path) -> None:
    path = write(tmp_path, "a.yaml", BUSYBOX.format(variant="a") + "refresh: weekly\n")
    with pytest.raises(ImageDefinitionError, match="refresh: 'weekly' is neither"):
        load_image(path)


def icefloe_catalogue(images_dir: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "cli.main", "catalogue", "--images-dir", str(images_dir)],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=REPO_DIR,
    )


def test_catalogue_command_lists_definitions_and_problems(tmp_path: Path) -> None:
    write(tmp_path, "good.yaml", BUSYBOX.format(variant="good") + "refresh: every 6h\n")
    write(tmp_path, "bad.yaml", BUSYBOX.format(variant="bad") + "arches: []\n")
    result = icefloe_catalogue(tmp_path)
    assert result.returncode == 1 and "Traceback" not in result.stderr, result
    out = result.stdout
    assert "1 definitions, 1 problems" in out
    assert "busybox:1.35:good" in out and "every 6h" in out
    assert "bad.yaml: arches: List should have at least 1 item" in out
    shipped = icefloe_catalogue(PACKAGED_IMAGES)
    assert shipped.returncode == 0 and "0 problems" in shipped.stdout, shipped
