"""The WebSocket gateway: tickets, sessions, message pump, ACK batching, prekey status."""

from obscura.gateway.gateway import Gateway, TicketService
from obscura.gateway.session import Session

__all__ = ["Gateway", "Session", "TicketService"]
