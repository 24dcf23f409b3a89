"""What a version is built from, as far as it can be told before building.

The definition's own digest tells a changed definition from an unchanged one whatever its
formatting, comments or key order.
"""

import hashlib

from core.spec import ImageSpec


def spec_digest(spec: ImageSpec) -> str:
    """sha256 of the validated spec (defaults filled in, shorthands expanded)."""
    return hashlib.sha256(spec.model_dump_json().encode()).hexdigest()
