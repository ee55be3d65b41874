"""GCRA rate limiting per client IP, and client-IP resolution behind trusted proxies (spec §6.7)."""

from __future__ import annotations

import functools
import ipaddress
import math
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable

__all__ = ["GcraLimiter", "client_ip"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _is_trusted(ip: ipaddress.IPv4Address | ipaddress.IPv6Address, trusted: Iterable[IPNetwork]) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip.version == net.version and ip in net for net in trusted)


@functools.lru_cache(maxsize=4096)
def _parse_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    """``ipaddress.ip_address`` (~10 us) once per distinct text: the same few peers send every
    request. Bounded, so a flood of distinct X-Forwarded-For tokens only evicts."""
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def client_ip(peer: str, forwarded_for: str | None, trusted: tuple[IPNetwork, ...]) -> str:
    """The rate-limit key: the peer IP, or, behind a trusted proxy, the rightmost untrusted XFF IP.

    Tokens that are not IP addresses (``different.spoof``) are skipped, as upstream does.
    """
    peer_ip = _parse_ip(peer)
    if peer_ip is None:
        return peer
    if not forwarded_for or not _is_trusted(peer_ip, trusted):
        return str(peer_ip)
    for token in reversed(forwarded_for.split(",")):
        ip = _parse_ip(token.strip())
        if ip is None:
            continue
        if not _is_trusted(ip, trusted):
            return str(ip)
    return str(peer_ip)


class GcraLimiter:
    """Generic cell rate algorithm: ``per_second`` cells replenish, ``burst`` may be spent at once.

    Memory stays bounded: a key whose theoretical arrival time has passed is indistinguishable
    from a fresh key and is dropped; above ``max_keys`` the least recently used keys go first
    (at worst such a client gets a fresh bucket, never a wrong refusal).
    """

    def __init__(self, per_second: int, burst: int, *, max_keys: int = 100_000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.interval_s = 1.0 / max(per_second, 1)  # upstream treats 0 as 1
        self.tolerance_s = self.interval_s * (max(burst, 1) - 1)
        self._tat: OrderedDict[str, float] = OrderedDict()
        self._max_keys = max_keys
        self._clock = clock
        self._next_sweep = 0.0

    def __len__(self) -> int:
        return len(self._tat)

    def check(self, key: str) -> float | None:
        """None if allowed (and a cell is spent), else the seconds to wait for the next cell."""
        now = self._clock()
        tat = self._tat.get(key, now)
        if tat < now:
            tat = now
        wait = tat - now - self.tolerance_s
        if wait > 0:
            return wait
        self._tat[key] = tat + self.interval_s
        self._tat.move_to_end(key)
        if len(self._tat) > self._max_keys:
            self._tat.popitem(last=False)
        if now >= self._next_sweep:
            self._sweep(now)
        return None

    @staticmethod
    def retry_after_secs(wait_s: float) -> int:
        """Whole seconds as upstream reports them (often 0)."""
        return int(math.floor(wait_s))

    def _sweep(self, now: float) -> None:
        self._next_sweep = now + 10.0
        stale = [k for k, tat in self._tat.items() if tat <= now]
        for k in stale:
            del self._tat[k]
