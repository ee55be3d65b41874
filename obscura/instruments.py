"""In-memory metric instruments and their snapshots; the facade's data model, free of OpenTelemetry (spec §8.1)."""

from __future__ import annotations

import math
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["Labels", "Counter", "UpDownCounter", "Histogram", "Gauge", "ObservableGauge", "Observations",
           "HistogramPoint", "MetricFamily", "family_of", "default_buckets"]

Labels = Mapping[str, str] | None

# Bucket boundaries by unit, chosen so the default OTel ones (made for milliseconds) never apply.
_SECONDS_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1.0, 2.5, 5.0, 10.0)
_SESSION_BUCKETS = (1.0, 10.0, 60.0, 300.0, 900.0, 1800.0, 3600.0, 7200.0, 21600.0, 43200.0, 86400.0)
_BYTES_BUCKETS = tuple(float(1024 * 4 ** i) for i in range(11))  # 1 KiB .. 1 GiB
_COUNT_BUCKETS = (1.0, 2.0, 5.0, 10.0, 20.0, 50.0, 100.0, 200.0, 500.0, 1000.0)


def default_buckets(name: str) -> tuple[float, ...]:
    if "session_duration" in name:
        return _SESSION_BUCKETS
    if name.endswith("_seconds"):
        return _SECONDS_BUCKETS
    if name.endswith("_bytes"):
        return _BYTES_BUCKETS
    return _COUNT_BUCKETS


def _key(labels: Labels) -> tuple[tuple[str, str], ...]:
    return tuple(sorted(labels.items())) if labels else ()


# -- instruments ---------------------------------------------------------------------------------
# Instruments aggregate in memory (a dict update per measurement, no lock: the loop is the only
# writer); the pipeline reads those aggregates when it exports. An OpenTelemetry synchronous
# instrument costs about 10 us per measurement here, which per-message counters cannot afford.
class _Instrument:
    __slots__ = ("name", "description", "unit", "_values")

    def __init__(self, name: str, description: str, unit: str) -> None:
        self.name = name
        self.description = description
        self.unit = unit
        self._values: dict[tuple[tuple[str, str], ...], Any] = {}

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
    """Distribution; ``value()`` is (count, sum) per label set; buckets are kept while exporting."""

    __slots__ = ("buckets", "_dist")

    def __init__(self, name: str, description: str, unit: str, buckets: Sequence[float] | None = None) -> None:
        super().__init__(name, description, unit)
        self.buckets = tuple(buckets) if buckets is not None else default_buckets(name)
        # label key -> [min, max, count per bucket..., count above the last bound]; None = not exported
        self._dist: dict[tuple[tuple[str, str], ...], list[Any]] | None = None

    def record(self, value: int | float, labels: Labels = None, times: int = 1) -> None:
        """Record ``value`` (``times`` observations of it: one call for a batch of equal values)."""
        k = _key(labels)
        count, total = self._values.get(k, (0, 0))
        self._values[k] = (count + times, total + value * times)
        dist = self._dist
        if dist is not None:
            d = dist.get(k)
            if d is None:
                d = dist[k] = [value, value] + [0] * (len(self.buckets) + 1)
            elif value < d[0]:
                d[0] = value
            elif value > d[1]:
                d[1] = value
            d[2 + bisect_left(self.buckets, value)] += times  # OTel/Prometheus buckets are (lower, upper]


class Gauge(_Instrument):
    """Last value per label set."""

    __slots__ = ()

    def set(self, value: int | float, labels: Labels = None) -> None:
        self._values[_key(labels)] = value


Observations = Iterable[tuple[int | float, Labels]]


class ObservableGauge(_Instrument):
    """A gauge read when metrics are collected (pool saturation): ``callback()`` yields (value, labels)."""

    __slots__ = ("callback",)

    def __init__(self, name: str, description: str, unit: str, callback: Callable[[], Observations]) -> None:
        super().__init__(name, description, unit)
        self.callback = callback

    def values(self) -> dict[tuple[tuple[str, str], ...], Any]:
        return {_key(labels): value for value, labels in self.callback()}

    def value(self, labels: Labels = None) -> Any:
        return self.values().get(_key(labels))


@dataclass(frozen=True, slots=True)
class HistogramPoint:
    bounds: tuple[float, ...]
    counts: tuple[int, ...]  # per bucket, not cumulative; one more than bounds (+Inf)
    sum: float
    count: int
    min: float = math.nan
    max: float = math.nan


@dataclass(slots=True)
class MetricFamily:
    name: str
    kind: str  # counter | updowncounter | gauge | histogram
    description: str = ""
    points: list[tuple[dict[str, str], float | HistogramPoint]] = field(default_factory=list)
    unit: str = ""


def family_of(inst: _Instrument) -> MetricFamily:
    kind = type(inst)
    if kind is Histogram:
        h: Histogram = inst  # type: ignore[assignment]
        values = h._values
        points = [(dict(k), HistogramPoint(h.buckets, tuple(d[2:]), values[k][1], values[k][0], d[0], d[1]))
                  for k, d in list((h._dist or {}).items())]
        return MetricFamily(h.name, "histogram", h.description, points, h.unit)
    name = "counter" if kind is Counter else "updowncounter" if kind is UpDownCounter else "gauge"
    return MetricFamily(inst.name, name, inst.description, [(dict(k), v) for k, v in inst.values().items()],
                        inst.unit)
