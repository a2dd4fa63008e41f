"""The vehicle registry (VRS v2) adapter: REST/JSON with RFC 9421 signatures.

``adapter`` holds the protocol flow, ``codec`` the bodies and the agency's OpenAPI contract
(shipped beside it, unchanged), ``problems`` the mapping of VRS problems onto gateway errors.
Registered as ``vrs`` in the ``gateway.adapters`` entry-point group.
"""

from gateway.adapters.vrs.adapter import VrsAdapter

__all__ = ["VrsAdapter"]
