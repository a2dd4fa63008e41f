"""Transports that carry agency messages (SOAP, REST) over aiohttp and know nothing of any agency.

Each transport owns the connection pool, timeouts and TLS for one agency and translates the HTTP
library's exceptions into ``gateway.errors`` exactly once, so adapters only ever see typed errors.
Message-level security (signatures, digests) enters through hooks the adapter passes in.
"""
