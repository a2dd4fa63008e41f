"""Cryptographic building blocks the adapters and mock agencies share.

``keys`` loads and identifies Ed25519 keys (RFC 8037 JWK, PEM; RFC 7638 thumbprints),
``digest`` computes and checks ``Content-Digest`` (RFC 9530), and ``httpsig`` signs and
verifies HTTP messages with the VRS v2 profile of RFC 9421. None of them does I/O per message:
keys are loaded once at start-up and the objects reused.
"""
