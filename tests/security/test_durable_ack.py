"""Finding 7 (issue 10): ACK-after-commit was not power-loss durable. The store ran WAL with
`synchronous=NORMAL`, where COMMIT returns before the WAL is fsynced: the gateway ACKed the
event, the detector forgot it, and a power loss could still drop the committed row. Now the
transaction that stores events (and is followed by their ACKs) runs with `synchronous=FULL`.
These tests read the level on the very connection that committed the events; they failed on
the old code (level 1 = NORMAL)."""

from __future__ import annotations

from tests.security.common import DEV, DEV2, T0, Clock, Link, gateway, key, use_clock
from tools.fleet.detector import VirtualDetector
from tools.gateway.store import Store

NORMAL, FULL = 1, 2  # what PRAGMA synchronous reports


def _level(st: Store) -> int:
    return int(st.db.execute("PRAGMA synchronous").fetchone()[0])


class ProbeLink(Link):
    """Records, at the moment of each ACK, the synchronous level of the store's connection."""

    def __init__(self, st: Store):
        super().__init__()
        self.st = st
        self.levels: list[int] = []

    def send(self, device: int, wire: bytes, addr: object) -> None:
        self.levels.append(_level(self.st))
        super().send(device, wire, addr)


def test_events_are_committed_with_synchronous_full_before_their_ack(tmp_path, monkeypatch):
    use_clock(monkeypatch, Clock())
    gw = gateway(tmp_path)
    st = gw.store
    assert st.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"  # WAL is kept
    trace: list[str] = []
    st.db.set_trace_callback(trace.append)
    start = _level(st)
    link = ProbeLink(st)
    for dev in (DEV, DEV2):
        det = VirtualDetector(dev, key(dev), retry_s=0.0)
        det.raise_event(2, 0, 320, 300)
        gw.handle(det.uplink(0.0, 1000) or b"", link)
    gw.flush()
    assert len(link.sent) == 2, "both events ACKed"
    assert link.levels == [FULL, FULL], "ACK sent after a commit that was not synchronous=FULL"

    # The transaction that inserted the events began under FULL (not raised after its COMMIT).
    ins = next(i for i, s in enumerate(trace) if s.startswith("INSERT INTO events"))
    begin = max(i for i in range(ins) if trace[i] == "BEGIN IMMEDIATE")
    assert "COMMIT" not in trace[begin:ins]
    pragmas = [s for s in trace[:begin] if s.upper().startswith("PRAGMA SYNCHRONOUS=")]
    in_effect = pragmas[-1].split("=", 1)[1].upper() if pragmas else start
    assert in_effect in ("FULL", "EXTRA", FULL, 3), f"events committed with synchronous={in_effect}"
    gw.close()


def test_telemetry_only_batches_skip_the_fsync(tmp_path, monkeypatch):
    """The cost side: batches without events keep NORMAL (one fsync per 50 ms batch of
    telemetry would be paid for nothing), and the next event batch goes back to FULL."""
    use_clock(monkeypatch, Clock())
    gw = gateway(tmp_path)
    st = gw.store
    link = ProbeLink(st)
    det = VirtualDetector(DEV, key(DEV), retry_s=0.0)
    gw.handle(det.telemetry(1000), link)
    gw.flush()
    assert _level(st) == NORMAL
    det.raise_event(2, 0, 320, 300)
    gw.handle(det.uplink(0.0, 1001) or b"", link)
    gw.flush()
    assert link.levels == [FULL]
    gw.handle(det.telemetry(1002), link)
    gw.flush()
    assert _level(st) == NORMAL
    gw.close()


def test_a_fresh_store_commits_events_with_full(tmp_path):
    """The store alone, as any caller (server, tests, bench) opens it."""
    st = Store(tmp_path / "s.db", "gw")
    row = (DEV, 1, 0, T0, None, "alarm", "residual", 320, 300, b"\0" * 8, "gw")
    assert st.flush([], [row], [], {}, {}) == [True]
    assert _level(st) == FULL
    st.close()
