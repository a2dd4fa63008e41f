"""An adapter for an imaginary vehicle registry that answers from its configuration.

It exists to prove that a third-party package plugs in through the ``gateway.adapters`` entry
point exactly as the in-tree adapters do.
"""

from __future__ import annotations

import datetime as dt

from gateway.adapters.base import AgencyCall, Capabilities
from gateway.config import AgencyConfig
from gateway.errors import ConfigError, RejectedError
from gateway.model.types import AgencyKind, InquiryCommand, InquiryResult, Outcome, Vehicle


class EchoAdapter:
    name = "echo"
    capabilities = Capabilities(kind=AgencyKind.VEHICLE, inquiry=True)

    def __init__(self, agency: AgencyConfig) -> None:
        plate = agency.options.get("plate")
        if not isinstance(plate, str):
            raise ConfigError("options.plate", "must be a string")
        self.plate = plate
        self.calls = 0

    async def execute(self, call: AgencyCall) -> Outcome:
        self.calls += 1
        command = call.command
        if not isinstance(command, InquiryCommand):
            raise RejectedError("echo answers inquiries only", code="unsupported")
        vehicle = Vehicle(plate=self.plate, vin="LS5A3DBE3NB123456", make="Echo", model="E1",
                          registered_on=dt.date(2020, 1, 1), status="NORMAL")
        return InquiryResult(subject=command.subject, as_of=dt.datetime.now(dt.UTC),
                             vehicles=(vehicle,))

    async def aclose(self) -> None:
        return None
