"""The northbound HTTP API (aiohttp) that court enforcement systems call, and its OpenAPI
document."""

from gateway.api.app import create_app

__all__ = ["create_app"]
