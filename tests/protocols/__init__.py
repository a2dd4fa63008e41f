"""Tests of the transports in gateway/protocols/."""
