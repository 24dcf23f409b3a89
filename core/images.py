"""Image definition files (`images/*.yaml`) -> ImageSpec, with errors that name the field."""

from pathlib import Path

from core.catalogue import Definition, read_definition
from core.spec import ImageSpec


class ImageDefinitionError(ValueError):
    pass


def load_image(path: Path) -> ImageSpec:
    """The spec of one definition file (its catalogue fields, `refresh` and `allow_failure`,
    are checked and left out), or every problem in it, in one line."""
    read = read_definition(path)
    if isinstance(read, Definition):
        return read.spec
    problems = "; ".join(p.text for p in read)
    raise ImageDefinitionError(f"{path}: {problems}")


def image_path(ref: str, images_dir: Path) -> Path:
    """A definition by name (`busybox`, as POST /api/v1/pipelines takes it) from images_dir,
    or by path (`images/busybox.yaml`, anything with a directory or a .yaml suffix)."""
    path = Path(ref)
    if len(path.parts) > 1 or path.suffix in (".yaml", ".yml"):
        return path
    found = images_dir / f"{ref}.yaml"
    if not found.is_file():
        there = ", ".join(sorted(p.stem for p in images_dir.glob("*.yaml"))) or "none"
        raise ImageDefinitionError(
            f"no image definition {ref!r} in {images_dir} (there: {there}); "
            "give a .yaml path or set ICEFLOE_IMAGES_DIR"
        )
    return found
