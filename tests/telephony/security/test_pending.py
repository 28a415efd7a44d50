"""Sockets waiting for `start`: at most the limit per process, the longest waiting out first."""

from __future__ import annotations

from telephony.security.pending import PendingStreams


class Socket:
    def __init__(self, name: str) -> None:
        self.name = name
        self.evicted = False

    def evict(self) -> None:
        self.evicted = True


def test_the_oldest_waiting_socket_makes_room() -> None:
    pending = PendingStreams(lambda: 3)
    sockets = [Socket(f"s{n}") for n in range(5)]
    assert [pending.add(s) for s in sockets[:3]] == [[], [], []]
    assert pending.add(sockets[3]) == [sockets[0]]
    pending.remove(sockets[1])  # it started: it no longer waits
    assert pending.add(sockets[4]) == []
    assert len(pending) == 3
    assert pending.add(Socket("s5")) == [sockets[2]]


def test_a_socket_that_went_away_does_not_wait() -> None:
    pending = PendingStreams(lambda: 2)
    pending.add(Socket("gone"))  # no reference kept: collected
    keep = Socket("kept")
    pending.add(keep)
    assert len(pending) == 1
