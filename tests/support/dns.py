"""A DNS server on loopback that answers one name with an address the test can change, the way
Docker's embedded DNS answers a service name with the container's current address."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from dnslib import QTYPE, RCODE, RR, A, DNSRecord
from dnslib.server import BaseResolver, DNSLogger, DNSServer

from tools.processes import free_port


class MovableName(BaseResolver):  # type: ignore[misc]
    """Answers A queries for ``name`` with ``address`` (TTL 1 s); every other name is NXDOMAIN."""

    def __init__(self, name: str, address: str) -> None:
        self.name = name.rstrip(".")
        self.address = address

    def resolve(self, request: DNSRecord, handler: Any) -> DNSRecord:
        reply = request.reply()
        question = request.q
        if str(question.qname).rstrip(".") != self.name:
            reply.header.rcode = RCODE.NXDOMAIN
        elif question.qtype == QTYPE.A:
            reply.add_answer(RR(question.qname, QTYPE.A, rdata=A(self.address), ttl=1))
        return reply


@contextmanager
def dns_server(name: str, address: str) -> Iterator[tuple[MovableName, str]]:
    """Serve ``name`` on 127.0.0.1 (UDP) for the block; yields the resolver (set its
    ``address`` to move the name) and the server as ``host:port`` for nginx's ``resolver``."""
    resolver = MovableName(name, address)
    port = free_port()
    quiet = DNSLogger("-request,-reply,-truncated,-error,-recv,-send,-data", prefix=False)
    server = DNSServer(resolver, address="127.0.0.1", port=port, logger=quiet)
    server.start_thread()
    try:
        yield resolver, f"127.0.0.1:{port}"
    finally:
        server.stop()
