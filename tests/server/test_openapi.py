"""The committed OpenAPI document is the one the code serves."""

from server_api.openapi import DOC, document


def test_docs_openapi_json_is_current():
    assert DOC.read_text() == document(), "API changed: run `python -m server_api.openapi`"


def test_served_openapi_lists_the_feeds_and_no_secret_fields(catalog):
    spec = catalog._http.get("/openapi.json").json()
    assert "/feeds/{secret}/streams/v1/images.json" in spec["paths"]
    assert "/api/v1/gc" in spec["paths"]
    schemas = spec["components"]["schemas"]
    assert "token" not in schemas["TokenView"]["properties"]
    assert "feed_path" not in schemas["CredentialView"]["properties"]
