"""The floor under a job's byte cost: what moving the same bytes costs one thread with
no HTTP, no parsing and no Python per piece, on this machine, now.

Raw loopback sockets: a peer thread sends what the job downloads, this thread receives
it with `recv_into` straight into the body's buffer, then sends what the job uploads to
a second peer thread that discards it. As in the bot's runs, the peers live on the
same machine, so each sender also does the receiving side's TCP work (loopback), and
only this thread's CPU is counted (`RUSAGE_THREAD`). Two variants: a fresh buffer per
job (as the bot allocates each body: first touches of its pages included) and one
buffer reused by every job (the least any implementation could do)."""

from __future__ import annotations

import resource
import socket
import threading
from dataclasses import dataclass

PIECE = 1 << 20  # bytes per send call, as the bot's uploads


@dataclass(frozen=True)
class Floor:
    jobs: int
    received: int  # bytes per job
    sent: int
    cpu_ms: float  # this thread's user + system CPU per job
    kernel_ms: float  # the system part
    moved: int  # bytes received and sent in all, checked against the request


def _thread_cpu() -> tuple[float, float]:
    r = resource.getrusage(resource.RUSAGE_THREAD)
    return r.ru_utime + r.ru_stime, r.ru_stime


def _feed(port: int, total: int) -> None:
    blob = memoryview(bytes(PIECE))
    with socket.create_connection(("127.0.0.1", port)) as s:
        while total:
            total -= s.send(blob[: min(total, PIECE)])


def _drain(port: int) -> None:
    buf = bytearray(PIECE)
    with socket.create_connection(("127.0.0.1", port)) as s:
        while s.recv_into(buf):
            pass


def measure(received: int, sent: int, jobs: int, *, reuse: bool) -> Floor:
    """Move `received` bytes in and `sent` bytes out per job, `jobs` times."""
    if sent > received:
        raise ValueError("the uploads are sent from the received bytes")
    with (
        socket.create_server(("127.0.0.1", 0)) as inbound,
        socket.create_server(("127.0.0.1", 0)) as outbound,
    ):
        peers = [
            threading.Thread(target=_feed, args=(inbound.getsockname()[1], received * jobs)),
            threading.Thread(target=_drain, args=(outbound.getsockname()[1],)),
        ]
        for peer in peers:
            peer.start()
        src, _ = inbound.accept()
        dst, _ = outbound.accept()
        moved = 0
        shared = bytearray(received) if reuse else None
        try:
            cpu0, kernel0 = _thread_cpu()
            for _ in range(jobs):
                body = memoryview(shared if shared is not None else bytearray(received))
                got = 0
                while got < received:
                    n = src.recv_into(body[got:], received - got)
                    if not n:
                        raise ConnectionError("the feeding peer stopped early")
                    got += n
                out = 0
                while out < sent:
                    out += dst.send(body[out : min(sent, out + PIECE)])
                moved += got + out
            cpu1, kernel1 = _thread_cpu()
        finally:
            src.close()
            dst.close()
            for peer in peers:
                peer.join()
    return Floor(
        jobs,
        received,
        sent,
        1000 * (cpu1 - cpu0) / jobs,
        1000 * (kernel1 - kernel0) / jobs,
        moved,
    )
