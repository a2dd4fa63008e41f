"""Finds adapter classes by name in the ``gateway.adapters`` entry-point group and builds one
adapter per configured agency.

In-tree adapters are registered in pyproject.toml under the same group a third-party package
uses, so there is exactly one way in; nothing here scans directories.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from importlib.metadata import entry_points
from typing import Any

from gateway.adapters.base import Adapter, Capabilities
from gateway.config import AgencyConfig, GatewayConfig
from gateway.errors import ConfigError

GROUP = "gateway.adapters"


class AdapterNotAvailable(ConfigError):
    """No installed package provides an adapter of that name."""


def adapter_class(name: str) -> type[Any]:
    """The class registered as ``name`` in the gateway.adapters group."""
    matches = [ep for ep in entry_points(group=GROUP) if ep.name == name]
    if not matches:
        known = ", ".join(sorted(ep.name for ep in entry_points(group=GROUP))) or "none"
        raise AdapterNotAvailable(
            "adapter", f"no adapter named {name!r} is installed (known: {known})"
        )
    try:
        cls = matches[0].load()
    except Exception as exc:  # a broken plugin must not be mistaken for a missing one
        raise ConfigError("adapter", f"adapter {name!r} failed to load: {exc}") from exc
    for attr in ("name", "capabilities", "execute", "aclose"):
        if not hasattr(cls, attr):
            raise ConfigError("adapter", f"adapter {name!r} has no {attr!r}: not an Adapter")
    return cls  # type: ignore[no-any-return]  # whatever the entry point names: checked above


def available_adapters() -> dict[str, str]:
    """Adapter names and the objects they point to, for operators and /v1/agencies."""
    return {ep.name: ep.value for ep in entry_points(group=GROUP)}


class AdapterRegistry(Mapping[str, Adapter]):
    """One adapter instance per configured agency, keyed by agency id."""

    def __init__(
        self, adapters: Mapping[str, Adapter], configs: Mapping[str, AgencyConfig]
    ) -> None:
        self._adapters = dict(adapters)
        self._configs = dict(configs)

    @classmethod
    def from_config(cls, config: GatewayConfig) -> AdapterRegistry:
        adapters: dict[str, Adapter] = {}
        for i, agency in enumerate(config.agencies):
            try:
                adapter_cls = adapter_class(agency.adapter)
            except ConfigError as exc:
                raise ConfigError(f"agencies[{i}].adapter", str(exc).split(": ", 1)[-1]) from exc
            caps: Capabilities = adapter_cls.capabilities
            if caps.kind != agency.kind:
                raise ConfigError(
                    f"agencies[{i}].kind",
                    f"adapter {agency.adapter!r} serves {caps.kind.value}, not {agency.kind.value}",
                )
            try:
                adapters[agency.id] = adapter_cls(agency)
            except ConfigError as exc:
                raise ConfigError(f"agencies[{i}].{exc.key}", str(exc).split(": ", 1)[-1]) from exc
        return cls(adapters, {a.id: a for a in config.agencies})

    def config(self, agency_id: str) -> AgencyConfig:
        return self._configs[agency_id]

    def __getitem__(self, agency_id: str) -> Adapter:
        return self._adapters[agency_id]

    def __iter__(self) -> Iterator[str]:
        return iter(self._adapters)

    def __len__(self) -> int:
        return len(self._adapters)

    async def aclose(self) -> None:
        for adapter in self._adapters.values():
            await adapter.aclose()
