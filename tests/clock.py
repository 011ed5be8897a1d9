"""A clock that stands still until a test moves it (the hub's `Clock`)."""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Callable
from dataclasses import dataclass, field

RESOLUTION = 1e-9


@dataclass
class ManualTimer:
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


@dataclass
class ManualClock:
    """Time stands still until a test moves it; timers fire as it passes them."""

    now: float = 1000.0
    _timers: list[tuple[float, int, ManualTimer, Callable[[], None]]] = field(default_factory=list)
    _order: itertools.count[int] = field(default_factory=itertools.count)

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], None]) -> ManualTimer:
        timer = ManualTimer()
        heapq.heappush(self._timers, (when, next(self._order), timer, callback))
        return timer

    def advance(self, seconds: float) -> None:
        self.now += seconds
        # As asyncio's loop does, a timer within the clock's resolution of now is due:
        # times summed in a different order may differ in their last bit.
        while self._timers and self._timers[0][0] <= self.now + RESOLUTION:
            _, _, timer, callback = heapq.heappop(self._timers)
            if not timer.cancelled:
                callback()
