"""The web processes of one serve take keep-alive connections in turn
(config/connection_shares.py); tests/test_serve.py checks it with real processes."""

from __future__ import annotations

from config import connection_shares
from config.connection_shares import ConnectionShares


def test_a_process_takes_a_connection_only_while_no_other_holds_fewer(tmp_path, monkeypatch):
    path = tmp_path / "shares"
    first, second = ConnectionShares(path, 0, 2), ConnectionShares(path, 1, 2)
    assert first.may_accept(0)  # the other has published nothing yet
    assert first.may_accept(1)
    assert second.may_accept(0)
    assert not first.may_accept(1)  # the other holds none
    assert second.may_accept(1)
    assert first.may_accept(1)  # even again
    assert not second.may_accept(2)
    # A process that stopped publishing is left out once its count is stale.
    now = connection_shares.time.monotonic()
    monkeypatch.setattr(
        connection_shares.time, "monotonic", lambda: now + connection_shares.STALE_SECONDS + 1
    )
    assert second.may_accept(2)
