"""Keep-alive connections spread evenly over the web processes of one ``manage.py serve``.

A client keeps its connection for many requests, so where a connection lands decides which
process, and which interpreter lock, serves it from then on. When every web process accepted
from one shared socket, whichever woke first took the connection: 3 of 4 benchmark clients
often shared one process while the other core idled (ingest fell from 465-555 to about 409
statuses/s on SQLite). Letting each process decide for itself whether to accept, from counts
the processes published to each other, did not hold either: waitress's loop asks whether to
accept once per turn and then sleeps in poll for up to its timeout, so a decision made on a
count that changed meanwhile stood, and accept and the count update raced.

So one party decides, with every count in hand: serve itself keeps the listening socket and
accepts, in a thread (``ConnectionBalancer``), and hands each connection to the web process
holding the fewest (ties: the one given a connection longest ago) over a Unix socket pair of
its own (``SOCK_SEQPACKET``: one message per connection, its descriptor attached with
SCM_RIGHTS). The web process makes of it a waitress channel exactly as waitress does with a
connection it accepts (config/webserver.py), and reports back, once a turn of its loop
whenever they changed, how many connections it holds open and how many it has taken in all;
serve's counts are those, plus what it handed over since. The order of
decisions is serve's alone, so two clients arriving together still land in different
processes.

A web process says when it has taken each connection. One that has not taken a connection
handed to it ``STALLED_AFTER_SECONDS`` ago is stalled (stopped, or its event loop stuck) and
is given no more until it takes what it has: as with a shared socket, where a process that
stops accepting is simply passed over, a stuck process costs at most the connections handed
to it in that second, not its share of every connection from then on.

A web process takes connections once it says it is ready; one that exits (its end of the
pair closes) takes none and its count is forgotten; started again, it gets a new pair. While
no web process is ready, or all hold ``CONNECTION_LIMIT``, serve accepts nothing and new
connections wait in the listening socket's backlog, as they would for a busy waitress. A
connection handed over in the instant a web process dies (its last thread still holding its
end of the pair) is lost with it, as are the connections it held.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import selectors
import socket
import threading
import time
from dataclasses import dataclass

logger = logging.getLogger(__name__)

# Each connection costs a web process a file descriptor (up to three with spooled bodies);
# waitress's own limit (config/webserver.py) is this too.
CONNECTION_LIMIT = 500

# serve -> web process: a connection, its descriptor attached.
CONNECTION = b"F"
# web process -> serve: ready to take connections; then, whenever they change, its counts:
# connections open, and connections taken since it started (``state_message``). Counts, not
# events: a report lost to a full queue is made good by the next.
READY = b"R"
STATE = b"S"


def state_message(open_connections: int, taken: int) -> bytes:
    return STATE + f"{open_connections},{taken}".encode()


def read_state(message: bytes) -> tuple[int, int] | None:
    """The last counts in ``message`` (one datagram), if any."""
    last = message.rsplit(STATE, 1)
    if len(last) < 2:
        return None
    open_connections, _, taken = last[1].partition(b",")
    return int(open_connections), int(taken)


# A web process that has not taken a connection handed to it this long ago is passed over.
STALLED_AFTER_SECONDS = 1.0


def socket_pair() -> tuple[socket.socket, socket.socket]:
    """serve's end and the web process's end of a new pair."""
    return socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)


@dataclass(eq=False)
class _WebProcess:
    name: str
    pair: socket.socket
    ready: bool = False
    open_connections: int = 0
    # When it was last given a connection (a turn number): ties go to the longest waiting.
    last_given: int = -1
    # Connections handed to it since it started, and how many of them it has said it took;
    # since when (monotonic) some have been waiting for it.
    handed: int = 0
    taken: int = 0
    untaken_since: float | None = None

    @property
    def untaken(self) -> int:
        return self.handed - self.taken

    def stalled(self, now: float) -> bool:
        return self.untaken_since is not None and now - self.untaken_since > STALLED_AFTER_SECONDS


class ConnectionBalancer:
    """Accepts on ``listening`` and hands each connection to a web process (see above)."""

    def __init__(self, listening: socket.socket):
        self.listening = listening
        listening.setblocking(False)
        self._selector = selectors.DefaultSelector()
        self._wakeup_receiver, self._wakeup_sender = socket.socketpair()
        self._wakeup_receiver.setblocking(False)
        self._selector.register(self._wakeup_receiver, selectors.EVENT_READ, None)
        self._lock = threading.Lock()  # over _arriving, which attach() adds to
        self._arriving: list[_WebProcess] = []
        # The thread's alone (stop() reads it once the thread has ended).
        self._webs: dict[str, _WebProcess] = {}
        self._turns = itertools.count()
        self._watching_listening = False
        self._stopping = False
        self._thread = threading.Thread(target=self._run, name="connection balancer", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def attach(self, name: str) -> socket.socket:
        """A new pair for the web process ``name``, about to be started (again); returns its
        end, to pass to it. Whatever pair ``name`` had before is dropped."""
        ours, theirs = socket_pair()
        ours.setblocking(False)
        with self._lock:
            self._arriving.append(_WebProcess(name, ours))
        self._wake()
        return theirs

    def stop_accepting(self) -> None:
        """Accept no more and close the listening socket: new clients are refused, rather
        than handed to web processes that are stopping."""
        if self._stopping:
            return
        self._stopping = True
        self._wake()
        self._thread.join(timeout=5)
        self.listening.close()

    def stop(self) -> None:
        """Accept no more, and close the listening socket and every pair."""
        self.stop_accepting()
        with self._lock:
            webs = list(self._webs.values()) + self._arriving
        self._webs.clear()
        for web in webs:
            web.pair.close()
        self._selector.close()
        self._wakeup_receiver.close()
        self._wakeup_sender.close()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wakeup_sender.send(b"w")

    def _run(self) -> None:
        while not self._stopping:
            try:
                self._turn()
            except Exception:
                # Whatever it was, serve must go on accepting: a stopped balancer would leave
                # every new connection waiting in the backlog.
                logger.exception("handing over connections failed; going on")
                time.sleep(0.1)

    def _turn(self) -> None:
        events = self._selector.select()
        readable = {key.fileobj for key, _ in events}
        if self._wakeup_receiver in readable:
            self._take_arrivals()
        # What the web processes said is heard before any connection is handed out: one
        # that got ready, or a connection that closed, before a client connected counts
        # for that client.
        for key, _ in events:
            web = key.data
            if isinstance(web, _WebProcess) and self._webs.get(web.name) is web:
                self._hear(web)
        self._watch_listening()
        if self.listening in readable:
            self._accept()
        self._watch_listening()

    def _take_arrivals(self) -> None:
        with contextlib.suppress(BlockingIOError):
            while self._wakeup_receiver.recv(4096):
                pass
        with self._lock:
            arriving, self._arriving = self._arriving, []
        for web in arriving:
            if (previous := self._webs.get(web.name)) is not None:
                self._drop(previous)
            self._webs[web.name] = web
            self._selector.register(web.pair, selectors.EVENT_READ, web)

    def _hear(self, web: _WebProcess) -> None:
        """What a web process said: ready, connections closed, or (nothing) that it exited."""
        while True:
            try:
                message = web.pair.recv(64)
            except BlockingIOError:
                return
            except OSError:
                message = b""
            if not message:
                self._drop(web)
                return
            web.ready = web.ready or READY in message
            if (state := read_state(message)) is None:
                continue
            open_connections, taken = state
            if taken > web.taken:
                # Still some to take: it is reading them, so it is not stalled.
                web.untaken_since = time.monotonic() if taken < web.handed else None
            web.taken = taken
            # Those it holds, and those on their way to it.
            web.open_connections = open_connections + web.untaken

    def _drop(self, web: _WebProcess) -> None:
        """The web process has exited (or been replaced): its connections died with it."""
        self._selector.unregister(web.pair)
        web.pair.close()
        if self._webs.get(web.name) is web:
            del self._webs[web.name]

    def _eligible(self) -> list[_WebProcess]:
        now = time.monotonic()
        return [
            web
            for web in self._webs.values()
            if web.ready and web.open_connections < CONNECTION_LIMIT and not web.stalled(now)
        ]

    def _watch_listening(self) -> None:
        """Accept only while some web process can take a connection: until then new ones
        wait in the backlog."""
        wanted = bool(self._eligible()) and not self._stopping
        if wanted and not self._watching_listening:
            self._selector.register(self.listening, selectors.EVENT_READ, None)
        elif self._watching_listening and not wanted:
            self._selector.unregister(self.listening)
        self._watching_listening = wanted

    def _accept(self) -> None:
        """Every connection waiting, each to the web process holding fewest at that moment."""
        while eligible := self._eligible():
            try:
                connection, _ = self.listening.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue  # the client gave up before it was accepted
            except OSError:
                # Descriptors ran out, most likely: try again shortly, not in a busy loop.
                logger.warning("accepting a connection failed", exc_info=True)
                time.sleep(0.1)
                return
            with connection:
                self._hand_over(connection, eligible)

    def _hand_over(self, connection: socket.socket, eligible: list[_WebProcess]) -> None:
        for web in sorted(eligible, key=lambda w: (w.open_connections, w.last_given)):
            try:
                socket.send_fds(web.pair, [CONNECTION], [connection.fileno()])
            except OSError:
                # Its queue is full (it stopped reading) or it has just exited (its pair
                # reports that next): the next fewest takes the connection.
                continue
            web.open_connections += 1
            web.last_given = next(self._turns)
            if not web.untaken:
                web.untaken_since = time.monotonic()
            web.handed += 1
            return
        logger.warning("no web process took a connection; it was closed")
