"""RTP port allocator: even ports from the configured range, released and reused, busy ports skipped."""

import socket

import pytest

from settings import Settings
from telephony.rtp.ports import NoFreePortError, PortAllocator


def free_even_range(width: int) -> tuple[int, int]:
    """An even-aligned range of ports that are free right now (probe by binding an ephemeral port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.bind(("127.0.0.1", 0))
        start = probe.getsockname()[1] & ~1
    start = min(start, 65535 - width) & ~1
    return start, start + width - 1


def test_hands_out_distinct_even_ports_until_the_range_is_exhausted():
    low, high = free_even_range(6)
    allocator = PortAllocator(low, high)
    sockets = [allocator.bind() for _ in range(3)]
    try:
        ports = [s.getsockname()[1] for s in sockets]
        assert len(set(ports)) == 3 and all(p % 2 == 0 and low <= p <= high for p in ports)
        assert allocator.in_use == frozenset(ports)
        with pytest.raises(NoFreePortError):
            allocator.bind()
    finally:
        for s in sockets:
            s.close()


def test_a_released_port_can_be_bound_again():
    low, high = free_even_range(2)
    allocator = PortAllocator(low, high)
    sock = allocator.bind()
    port = sock.getsockname()[1]
    sock.close()
    allocator.release(port)
    again = allocator.bind()
    assert again.getsockname()[1] == port and allocator.in_use == {port}
    again.close()


def test_a_port_held_by_another_program_is_skipped():
    low, high = free_even_range(4)
    squatter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    squatter.bind(("127.0.0.1", low))
    allocator = PortAllocator(low, high)
    try:
        sock = allocator.bind()
        assert sock.getsockname()[1] == low + 2
        sock.close()
    finally:
        squatter.close()


def test_odd_bounds_are_rounded_to_even_ports_and_empty_ranges_rejected():
    assert PortAllocator(20001, 20004).capacity == 2
    with pytest.raises(ValueError):
        PortAllocator(20001, 20001)


def test_range_comes_from_settings():
    settings = Settings.from_env({"RTP_PORT_MIN": "31000", "RTP_PORT_MAX": "31099"})
    assert PortAllocator.from_settings(settings).capacity == 50
