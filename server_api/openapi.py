"""Write the image server's OpenAPI document: `python -m server_api.openapi [PATH]`.

The committed copy is docs/openapi.json; a test fails when it no longer matches the
code, so API changes show up in review as a diff of that file.
"""

import json
import sys
import tempfile
from pathlib import Path

from core.config import REPO_DIR, ServerSettings
from server_api.main import create_app
from server_api.services import services_of

DOC = REPO_DIR / "docs" / "openapi.json"


def document() -> str:
    with tempfile.TemporaryDirectory() as tmp:  # the app wants a catalog; a throwaway one
        app = create_app(ServerSettings(state_dir=Path(tmp), database_url=None))
        services_of(app).engine.dispose()
        return json.dumps(app.openapi(), indent=2, sort_keys=True) + "\n"


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else DOC
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(document())
    print(f"wrote {target}")
