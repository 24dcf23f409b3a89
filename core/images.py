"""Image definition files (`images/*.yaml`) -> ImageSpec, with errors that name the field."""

from pathlib import Path

import yaml
from pydantic import ValidationError

from core.spec import ImageSpec


class ImageDefinitionError(ValueError):
    pass


def load_image(path: Path) -> ImageSpec:
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise ImageDefinitionError(f"cannot read image definition {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ImageDefinitionError(f"{path} is not valid YAML: {exc}") from None
    if not isinstance(data, dict):
        raise ImageDefinitionError(f"{path}: expected a mapping of fields")
    try:
        return ImageSpec.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'definition'}: {e['msg']}"
            for e in exc.errors()
        )
        raise ImageDefinitionError(f"{path}: {problems}") from None


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
