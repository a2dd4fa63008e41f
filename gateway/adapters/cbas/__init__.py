"""The bank (CBAS v1) adapter: SOAP 1.1 with WS-Security X.509 signatures, asynchronous tickets.

``adapter`` holds the protocol flow (submit, Receipt checkpoint, polls), ``codec`` the payloads
and the bank's WSDL/XSD contract (shipped beside it, unchanged), ``faults`` the mapping of CBAS
fault and rejection codes onto gateway errors. Registered as ``cbas`` in the
``gateway.adapters`` entry-point group.
"""

from gateway.adapters.cbas.adapter import CbasAdapter

__all__ = ["CbasAdapter"]
