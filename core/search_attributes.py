"""Search attributes the pipeline keeps current, so the Temporal UI can filter on them.

The deploy scripts and test fixtures register exactly these (`clients.temporal.register`).
"""

from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

from core.spec import ImageSpec

IMAGE = SearchAttributeKey.for_keyword("IcefloeImage")
SERIAL = SearchAttributeKey.for_keyword("IcefloeSerial")
ARCHES = SearchAttributeKey.for_keyword_list("IcefloeArches")
PHASE = SearchAttributeKey.for_keyword("IcefloePhase")
CHANNEL = SearchAttributeKey.for_keyword("IcefloeChannel")

ALL = (IMAGE, SERIAL, ARCHES, PHASE, CHANNEL)


def dev_server_flags() -> list[str]:
    """`--search-attribute Name=Type` flags for `temporal server start-dev`."""
    kinds = {"KEYWORD": "Keyword", "KEYWORD_LIST": "KeywordList"}
    return [
        arg
        for key in ALL
        for arg in ("--search-attribute", f"{key.name}={kinds[key.indexed_value_type.name]}")
    ]


def initial(image: ImageSpec, serial: str) -> TypedSearchAttributes:
    """Set at start, so a pipeline is findable in the UI before its first task runs."""
    return TypedSearchAttributes(
        [
            SearchAttributePair(IMAGE, image.name),
            SearchAttributePair(SERIAL, serial),
            SearchAttributePair(ARCHES, list(image.arches)),
            SearchAttributePair(PHASE, "queued"),
        ]
    )
