"""The shapes measured: streams per channel, senders per channel, channels."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    # Streams per channel (S); the first `senders` of them also send (P).
    subscribers: int
    senders: int
    channels: int = 1

    @property
    def streams(self) -> int:
        return self.subscribers * self.channels

    @property
    def ingestion(self) -> bool:
        """Every stream sends: a message has few copies, so posting is what is measured."""
        return self.senders == self.subscribers

    def describe(self) -> str:
        shape = f"S={self.subscribers}/P={self.senders * self.channels}"
        return f"{self.channels}x{shape}" if self.channels > 1 else shape


SCENARIOS = {
    scenario.name: scenario
    for scenario in (
        Scenario("s10", subscribers=10, senders=1),
        Scenario("s100", subscribers=100, senders=5),
        Scenario("s500", subscribers=500, senders=10),
        Scenario("s1000", subscribers=1000, senders=10),
        Scenario("c10x100", subscribers=100, senders=1, channels=10),
        # Ingestion: every stream sends, fan-out is not the limit.
        Scenario("in200x1", subscribers=1, senders=1, channels=200),
        Scenario("in50x2", subscribers=2, senders=2, channels=50),
        Scenario("in1x100", subscribers=100, senders=100),
    )
}
# The scenario the login storm runs beside, and the profile is taken under.
FEATURED = "s500"
