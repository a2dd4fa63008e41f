"""Mock bank (CBAS v1, the agency side), with its default fixture and WSDL/XSD copies.

``fixture.json``, ``bank-cbas-v1.xsd`` and ``bank-cbas-v1.wsdl`` are unchanged copies of the
files in ``agency-specs``; request payloads are validated against the XSD (CBAS-01, CBAS-08).
The server answers SOAP 1.1 ``POST`` on ``/cbas/v1`` (the path of the WSDL's placeholder
address) and on ``/``.
"""
