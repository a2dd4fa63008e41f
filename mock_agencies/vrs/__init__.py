"""Mock vehicle registry (VRS v2, the agency side), with its default fixture and OpenAPI copy.

``fixture.json`` and ``vehicle-registry-vrs-v2.openapi.yaml`` are unchanged copies of the files
in ``agency-specs``; request bodies are validated against the latter (VRS-01).
"""
