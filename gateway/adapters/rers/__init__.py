"""The land registry (RERS v1) adapter: SOAP 1.2, enveloped XML Signature (ECDSA P-256),
synchronous answers.

``adapter`` holds the protocol flow (sign, send, verify, bind the answer to our request),
``codec`` the payloads and the registry's WSDL/XSD contract (shipped beside it, unchanged),
``faults`` the mapping of RERS fault codes onto gateway errors. Registered as ``rers`` in the
``gateway.adapters`` entry-point group.
"""

from gateway.adapters.rers.adapter import RersAdapter

__all__ = ["RersAdapter"]
