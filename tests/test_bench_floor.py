"""bench/floor.py moves exactly the bytes it is asked to, and counts its CPU."""

from __future__ import annotations

import pytest

from bench.floor import measure


@pytest.mark.parametrize("reuse", [False, True])
def test_the_floor_moves_every_byte_in_and_out(reuse: bool) -> None:
    received, sent, jobs = 3_000_001, 2_000_003, 3  # not multiples of a socket read
    floor = measure(received, sent, jobs, reuse=reuse)
    assert floor.moved == jobs * (received + sent)
    assert (floor.received, floor.sent, floor.jobs) == (received, sent, jobs)
    assert floor.cpu_ms > 0
    assert 0 <= floor.kernel_ms <= floor.cpu_ms + 1e-9  # user time may be 0


def test_uploads_cannot_exceed_what_was_received() -> None:
    with pytest.raises(ValueError):
        measure(1_000, 2_000, 1, reuse=False)
