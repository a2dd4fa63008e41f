"""Tests of the agency adapters, one package per agency (mirrors gateway/adapters/)."""
