"""Metrics and spans facade; the only module that may import OpenTelemetry (spec §8, issue 7).

Services receive a ``Telemetry`` and create their instruments once, at construction:

    self._registrations = telemetry.counter("obscura_registrations_total", "successful registrations")
    self._registrations.add(1)
    self._sent.add(n, {"status": "success"})

Every instrument also keeps its running totals in memory (``telemetry.value(name, labels)``), which
costs a dict update and lets tests assert on what the server counted without any exporter.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator, Mapping
from typing import Any

__all__ = ["Telemetry", "Counter", "Histogram", "UpDownCounter", "Gauge"]

Labels = Mapping[str, str] | None


def _key(labels: Labels) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items())) if labels else ()


class _Instrument:
    __slots__ = ("name", "description", "unit", "_values", "_lock")

    def __init__(self, name: str, description: str, unit: str) -> None:
        self.name = name
        self.description = description
        self.unit = unit
        self._values: dict[tuple[tuple[str, str], ...], Any] = {}
        self._lock = threading.Lock()

    def value(self, labels: Labels = None) -> Any:
        return self._values.get(_key(labels))

    def values(self) -> dict[tuple[tuple[str, str], ...], Any]:
        return dict(self._values)


class Counter(_Instrument):
    """Monotonic sum."""

    __slots__ = ()

    def add(self, amount: int | float = 1, labels: Labels = None) -> None:
        k = _key(labels)
        self._values[k] = self._values.get(k, 0) + amount


class UpDownCounter(Counter):
    """Sum that may go down (live connections, channels)."""

    __slots__ = ()


class Histogram(_Instrument):
    """Distribution; in memory we keep (count, sum) per label set."""

    __slots__ = ()

    def record(self, value: int | float, labels: Labels = None) -> None:
        k = _key(labels)
        count, total = self._values.get(k, (0, 0))
        self._values[k] = (count + 1, total + value)


class Gauge(_Instrument):
    """Last value per label set."""

    __slots__ = ()

    def set(self, value: int | float, labels: Labels = None) -> None:
        self._values[_key(labels)] = value


class Telemetry:
    """One per node. Asking twice for the same name returns the same instrument."""

    def __init__(self) -> None:
        self._instruments: dict[str, _Instrument] = {}

    def _get(self, cls: type, name: str, description: str, unit: str) -> Any:
        inst = self._instruments.get(name)
        if inst is None:
            inst = self._instruments[name] = cls(name, description, unit)
        elif type(inst) is not cls:
            raise TypeError(f"metric {name} already registered as {type(inst).__name__}")
        return inst

    def counter(self, name: str, description: str = "", unit: str = "") -> Counter:
        return self._get(Counter, name, description, unit)

    def up_down_counter(self, name: str, description: str = "", unit: str = "") -> UpDownCounter:
        return self._get(UpDownCounter, name, description, unit)

    def histogram(self, name: str, description: str = "", unit: str = "") -> Histogram:
        return self._get(Histogram, name, description, unit)

    def gauge(self, name: str, description: str = "", unit: str = "") -> Gauge:
        return self._get(Gauge, name, description, unit)

    def value(self, name: str, labels: Labels = None) -> Any:
        """The in-memory value of a metric (None if never recorded); for tests and /metrics."""
        inst = self._instruments.get(name)
        return None if inst is None else inst.value(labels)

    def instruments(self) -> dict[str, _Instrument]:
        return dict(self._instruments)

    @contextlib.contextmanager
    def span(self, name: str, attributes: Mapping[str, Any] | None = None) -> Iterator[None]:
        """A trace span around a service call (no-op until the tracing pipeline lands)."""
        yield
