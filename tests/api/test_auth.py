"""Caller authentication: bearer tokens, the 401 challenge, and the public probe routes."""

from __future__ import annotations

import pytest

from tests.api.conftest import Api


@pytest.mark.parametrize("path", ["/v1/agencies", "/v1/inquiry-batches/x",
                                  "/v1/control-requests/0b7c2f4e-8a7d-4d38-9f3e-2f1b8f7d6c5a"])
async def test_missing_token_is_401_with_challenge(api: Api, path: str) -> None:
    r = await api.get(path, token=None)
    assert r.status == 401
    assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert r.body["type"] == "https://agency-gateway.dev/problems/unauthorized"


async def test_bad_token_is_401(api: Api) -> None:
    r = await api.get("/v1/agencies", token="not-a-token-of-anyone")
    assert r.status == 401
    assert 'error="invalid_token"' in r.headers["WWW-Authenticate"]


async def test_other_scheme_is_401(api: Api) -> None:
    r = await api.get("/v1/agencies", token=None, headers={"Authorization": "Basic Zm9vOmJhcg=="})
    assert r.status == 401
    assert 'error="invalid_request"' in r.headers["WWW-Authenticate"]


async def test_post_without_token_is_401_before_the_body_is_read(api: Api) -> None:
    r = await api.post("/v1/inquiry-batches", token=None, data=b"junk",
                       content_type="application/json")
    assert r.status == 401


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/openapi.yaml", "/openapi.json"])
async def test_probes_and_document_are_public(api: Api, path: str) -> None:
    assert (await api.get(path, token=None)).status == 200


async def test_unknown_route_and_method_are_problems(api: Api) -> None:
    r = await api.get("/v2/nothing", token=None)
    assert r.status == 404 and r.body["type"].endswith("/not-found")
    r = await api.call("DELETE", "/v1/agencies")
    assert r.status == 405 and "GET" in r.headers["Allow"]
