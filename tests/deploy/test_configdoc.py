"""docs/configuration.md is the settings models' page: every variable, its default and meaning."""

from pydantic import Field

from core.config import ServerSettings, Settings, variables
from deploy import configdoc


def test_the_page_is_what_the_models_generate() -> None:
    assert configdoc.PAGE.read_text() == configdoc.page(), "run: python -m deploy.configdoc"


def test_every_setting_has_a_description() -> None:
    assert configdoc.missing_descriptions() == []


def test_the_page_names_every_variable_once() -> None:
    text = configdoc.PAGE.read_text()
    for path, _ in variables():
        name = "ICEFLOE_" + "_".join(path).upper()
        assert text.count(f"| `{name}` |") == 1, name


def test_a_setting_without_a_description_is_named() -> None:
    """The check above looks at each field, in the server's group too."""

    class Bare(ServerSettings):
        spare: int = Field(1)

    class WithBare(Settings):
        server: Bare = Field(default_factory=Bare)

    assert configdoc.missing_descriptions(WithBare) == ["ICEFLOE_SERVER_SPARE"]
