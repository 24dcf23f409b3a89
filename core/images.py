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
