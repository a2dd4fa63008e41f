"""Mock land registry (RERS v1, the agency side), with its default fixture and WSDL/XSD copies.

``fixture.json``, ``land-registry-rers-v1.xsd`` and ``land-registry-rers-v1.wsdl`` are unchanged
copies of the files in ``agency-specs``; request payloads are validated against the XSD
(RERS-02, RERS-08). The server answers SOAP 1.2 ``POST`` on ``/rers/v1`` (the path of the WSDL's
placeholder address) and on ``/``.
"""
