"""The catalogue: every image definition in ICEFLOE_IMAGES_DIR, read anew at each refresh.

A file that does not validate, or two files that claim the same image, become problems
with the file, the field and the reason; every other definition still refreshes.
A definition file is an ImageSpec plus two catalogue fields that are not part of the
image itself (so changing them changes no spec digest): `refresh` and `allow_failure`.
"""

import re
from pathlib import Path

import yaml
from pydantic import BaseModel, ValidationError

from core.spec import ImageSpec

# A catalogue without its own `refresh:` rule is refreshed nightly.
NIGHTLY = "0 3 * * *"
SHORTHANDS = {"@hourly": "0 * * * *", "@daily": NIGHTLY, "@nightly": NIGHTLY}
_INTERVAL = re.compile(r"^every ([1-9][0-9]*)(m|h|d)$")
_UNIT_S = {"m": 60, "h": 3600, "d": 86400}
# Per cron field: its name and range (minute, hour, day of month, month, day of week).
_CRON_FIELDS = (
    ("minute", 0, 59),
    ("hour", 0, 23),
    ("day", 1, 31),
    ("month", 1, 12),
    ("weekday", 0, 6),
)
_CRON_ITEM = re.compile(r"^(\*|([0-9]+)(-([0-9]+))?)(/([1-9][0-9]*))?$")


class RefreshRule(BaseModel):
    """When images are refreshed: a 5-field cron expression (UTC) or an interval."""

    cron: str | None = None
    every_s: int | None = None

    @property
    def text(self) -> str:
        """The rule as definitions write it; also what names its Temporal Schedule."""
        if self.every_s is not None:
            for unit in ("d", "h", "m"):
                if self.every_s % _UNIT_S[unit] == 0:
                    return f"every {self.every_s // _UNIT_S[unit]}{unit}"
        return self.cron or NIGHTLY


def parse_rule(text: str) -> RefreshRule:
    """`0 3 * * *`, `@daily`, or `every 6h` (m, h, d). ValueError says what is wrong."""
    text = " ".join(str(text).split())
    text = SHORTHANDS.get(text, text)
    if m := _INTERVAL.match(text):
        return RefreshRule(every_s=int(m[1]) * _UNIT_S[m[2]])
    fields = text.split(" ")
    if len(fields) != 5:
        raise ValueError(
            f"{text!r} is neither a cron expression of 5 fields (minute hour day month "
            "weekday, UTC) nor an interval such as `every 6h`"
        )
    for value, (name, low, high) in zip(fields, _CRON_FIELDS, strict=True):
        for item in value.split(","):
            m = _CRON_ITEM.match(item)
            numbers = [int(n) for n in (m[2], m[4]) if n] if m else []
            if not m or any(not low <= n <= high for n in numbers) or numbers != sorted(numbers):
                raise ValueError(
                    f"cron {name} {value!r}: use *, {low}-{high}, ranges, lists, /steps"
                )
    return RefreshRule(cron=text)


class Definition(BaseModel):
    """One image of the catalogue, as its file says."""

    file: str  # the file's name in the images directory
    spec: ImageSpec
    refresh: RefreshRule
    allow_failure: bool = False  # its failures are reported but do not fail the refresh

    @property
    def image(self) -> str:
        return self.spec.name


class DefinitionProblem(BaseModel):
    """Why a file is not in the catalogue: its file, the field at fault, the reason."""

    file: str
    field: str = ""  # "" when the whole file is at fault
    reason: str

    @property
    def text(self) -> str:
        """`field: reason`, as one line under its file."""
        return f"{self.field}: {self.reason}" if self.field else self.reason


class Catalogue(BaseModel):
    definitions: list[Definition] = []
    problems: list[DefinitionProblem] = []

    def rules(self) -> dict[str, list[str]]:
        """Per refresh rule (its text), the images it refreshes."""
        out: dict[str, list[str]] = {}
        for d in self.definitions:
            out.setdefault(d.refresh.text, []).append(d.image)
        return out


NIGHTLY_RULE = RefreshRule(cron=NIGHTLY)


def read_definition(
    path: Path, default: RefreshRule = NIGHTLY_RULE
) -> Definition | list[DefinitionProblem]:
    """One definition file, or every problem found in it (never an exception)."""
    name = path.name
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        return [DefinitionProblem(file=name, reason=f"cannot read it: {exc.strerror}")]
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        return [DefinitionProblem(file=name, reason=f"not valid YAML: {exc}")]
    if not isinstance(data, dict):
        return [DefinitionProblem(file=name, reason="expected a mapping of fields")]
    problems: list[DefinitionProblem] = []
    rule = default
    if "refresh" in data:
        try:
            rule = parse_rule(data.pop("refresh"))
        except ValueError as exc:
            problems.append(DefinitionProblem(file=name, field="refresh", reason=str(exc)))
    allow_failure = data.pop("allow_failure", False)
    if not isinstance(allow_failure, bool):
        problems.append(
            DefinitionProblem(file=name, field="allow_failure", reason="must be true or false")
        )
    try:
        spec = ImageSpec.model_validate(data)
    except ValidationError as exc:
        problems += [
            DefinitionProblem(
                file=name,
                field=".".join(str(p) for p in e["loc"]) or "definition",
                reason=e["msg"].removeprefix("Value error, "),
            )
            for e in exc.errors()
        ]
        return problems
    if problems:
        return problems
    return Definition(file=name, spec=spec, refresh=rule, allow_failure=allow_failure)


def load_catalogue(images_dir: Path, default_refresh: str = NIGHTLY) -> Catalogue:
    """Every `*.yaml` / `*.yml` in images_dir, in name order, validated one by one."""
    default = parse_rule(default_refresh)
    if not images_dir.is_dir():
        return Catalogue(
            problems=[DefinitionProblem(file=str(images_dir), reason="not a directory")]
        )
    found: list[Definition] = []
    problems: list[DefinitionProblem] = []
    paths = sorted(p for p in images_dir.iterdir() if p.suffix in (".yaml", ".yml"))
    for path in paths:
        read = read_definition(path, default)
        if isinstance(read, Definition):
            found.append(read)
        else:
            problems += read
    claims: dict[str, list[str]] = {}
    for d in found:
        claims.setdefault(d.image, []).append(d.file)
    for image, files in claims.items():
        if len(files) > 1:
            problems += [
                DefinitionProblem(
                    file=f,
                    field="os/release/variant",
                    reason=f"{image} is claimed by {len(files)} files ({', '.join(files)}); "
                    "none of them is refreshed until one remains",
                )
                for f in files
            ]
    return Catalogue(
        definitions=[d for d in found if len(claims[d.image]) == 1],
        problems=problems,
    )
