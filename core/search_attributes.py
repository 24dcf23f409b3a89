"""Search attributes the pipeline keeps current, so the Temporal UI can filter on them.

The deploy scripts and test fixtures register exactly these.
"""

from temporalio.api.enums.v1 import IndexedValueType
from temporalio.api.operatorservice.v1 import (
    AddSearchAttributesRequest,
)
from temporalio.client import Client
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes
from temporalio.service import RPCError, RPCStatusCode

from core.models import ImageSpec

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


async def register(client: Client) -> None:
    """Add the attributes to a server started without them (a cluster, the time-skipping
    server): an unknown attribute fails the pipeline's workflow task and it hangs."""
    wanted = {key.name: IndexedValueType.ValueType(key.indexed_value_type) for key in ALL}
    try:
        await client.operator_service.add_search_attributes(
            AddSearchAttributesRequest(namespace=client.namespace, search_attributes=wanted)
        )
    except RPCError as exc:
        if exc.status != RPCStatusCode.ALREADY_EXISTS:
            raise
