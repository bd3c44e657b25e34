"""Keep-alive connections spread evenly over the web processes of one ``manage.py serve``.

The web processes accept on one shared socket, and whichever is in ``accept`` first takes
the connection. A client keeps its connection for many requests, so four clients could all
land in one process, and that process's interpreter lock then bounds them while the other
core sits idle (seen: 3 of 4 benchmark clients in one process, a third of the throughput
lost). Each process therefore publishes how many connections it holds, in a small file
every process of the serve maps, and takes a new connection only while it holds no more
than the least loaded of the others. A process that stopped publishing (it died, or is
stuck) is left out after ``STALE_SECONDS``, so the others wait on it that long at most: a new
connection is then accepted up to two seconds late, while a connection already open is
served as always.
"""

from __future__ import annotations

import mmap
import os
import struct
import time
from pathlib import Path

SLOT = struct.Struct("<qd")  # connections held, when last published (time.monotonic)
# Waitress's loop wakes at least once a second (its poll timeout), publishing each time.
STALE_SECONDS = 2.0


class ConnectionShares:
    """Slot ``slot`` of ``slots`` in the file at ``path`` (made by the first process to
    open it; a slot never written is empty)."""

    def __init__(self, path: Path, slot: int, slots: int):
        if not 0 <= slot < slots:
            raise ValueError(f"slot {slot} is not one of {slots}")
        size = SLOT.size * slots
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            if os.fstat(fd).st_size < size:
                os.ftruncate(fd, size)  # zeros: empty slots
            self._map = mmap.mmap(fd, size)
        finally:
            os.close(fd)
        self.slot, self.slots = slot, slots

    def may_accept(self, held: int) -> bool:
        """Publish ``held`` (this process's connections) and say whether to take another."""
        now = time.monotonic()
        SLOT.pack_into(self._map, self.slot * SLOT.size, held, now)
        for slot in range(self.slots):
            if slot == self.slot:
                continue
            theirs, published = SLOT.unpack_from(self._map, slot * SLOT.size)
            if published and now - published < STALE_SECONDS and theirs < held:
                return False
        return True
