"""Gateway ingest with the 2020 plan's 1010 detectors.

1. End to end over UDP (what is claimed): the real gateway process (`python -m tools.gateway
   run --udp`) and a sender process on the other core that replays telemetry frames of 1010
   virtual detectors (encoded beforehand by the real codec, one frame per datagram, round-robin
   over the devices) at a fixed paced rate. After the sender stops, the gateway's own counter
   of stored rows (committed to SQLite) must equal the number of frames sent: zero loss. The
   highest paced rate with zero loss is the sustained ingest figure; the gateway's CPU seconds
   per frame come from /proc.
2. The same frames fed in process to Gateway.handle (decode -> registry -> dedup -> batch ->
   SQLite), no sockets: the pipeline's ceiling, and how its CPU time splits between decode
   (protocol.frame.decode alone over the same frames), storage (Store.flush alone over the same
   rows) and the rest (registry lookup, dedup window, row building).
3. Authenticated events in process: HMAC check, UNIQUE insert, alarm state, tagged ACK.
4. Durability cost (issue 10 finding 7), wall clock, both levels side by side in one run,
   interleaved: (a) the same authenticated events, each committed in its own transaction and
   ACKed after it (the worst case: at low load the 50 ms timer commits each alarm alone), with
   the event batches at synchronous=NORMAL (the old store) and FULL (the store now); (b) the
   same telemetry rows in 1000-row batches (20,000 frames/s at the 50 ms flush interval) with
   the whole connection at NORMAL and at FULL: what FULL everywhere would cost, and why the
   store keeps NORMAL for batches without events. fsync time is I/O wait, not CPU: wall clock.
   The databases live in the temporary directory: on tmpfs the fsync is free and the ratio 1.
"""

from __future__ import annotations

import json
import multiprocessing as mp
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from efd import events as ev
from protocol import frame as fr
from protocol import host
from tools.fleet.detector import VirtualDetector
from tools.gateway.core import Gateway
from tools.gateway.registry import fleet_from_plan, load_plan, write_registry
from tools.gateway.store import Store

ROOT = Path(__file__).resolve().parents[1]
SECRET = b"bench-fleet-secret"
TARGET_FPS = 20_000
RATES = (20_000, 35_000, 50_000, 65_000)  # stops at the first rate with any loss
SECONDS = 4.0


def _frames(devs, per_device: int) -> list[bytes]:
    dets = [VirtualDetector(d.device, d.key or b"") for d in devs]
    t = host.now()
    return [v.telemetry(t + k) for k in range(per_device) for v in dets]


def _sender(ports: list[int], rate: int, seconds: float, q) -> None:
    """Paced TELEMETRY of the 1010-device fleet to the gateway(s) on `ports`: each device always
    to the same one (several instances split the fleet by device, bench_pg)."""
    devs = fleet_from_plan(load_plan(), SECRET)
    n_dev = len(devs)
    frames = _frames(devs, max(1, int(rate * seconds) // n_dev + 1))[: int(rate * seconds)]
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4 << 20)
    dsts = [("127.0.0.1", p) for p in ports]
    q.put("ready")
    t0 = time.perf_counter()
    sent = 0
    n = len(frames)
    while sent < n:
        due = min(n, int((time.perf_counter() - t0) * rate) + 1)
        while sent < due:
            # frames are round-robin over the devices: frame i is device i mod n_dev's
            s.sendto(frames[sent], dsts[(sent % n_dev) % len(dsts)])
            sent += 1
        time.sleep(0.0005)
    q.put((sent, time.perf_counter() - t0))


def _cpu(pid: int) -> float:
    f = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(f[11]) + int(f[12])) / os.sysconf("SC_CLK_TCK")


def _stored(db: Path, name: str) -> int:
    try:
        c = sqlite3.connect(db, timeout=10)
        r = c.execute("SELECT value FROM counters WHERE gateway=? AND name='stored:telemetry'",
                      (name,)).fetchone()  # fmt: skip
        c.close()
        return int(r[0]) if r else 0
    except sqlite3.Error:
        return 0


def udp_run(tmp: Path, rate: int) -> dict:
    reg = tmp / "fleet.csv"
    db = tmp / f"udp{rate}.db"
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    ready = tmp / f"ready{rate}"
    gw = subprocess.Popen(
        [sys.executable, "-m", "tools.gateway", "run", "--registry", str(reg), "--db", str(db),
         "--udp", f"127.0.0.1:{port}", "--name", "bench", "--ready-file", str(ready)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    try:
        t_end = time.monotonic() + 30
        while not ready.exists() and time.monotonic() < t_end:
            time.sleep(0.05)
        q: mp.Queue = mp.Queue()
        p = mp.Process(target=_sender, args=([port], rate, SECONDS, q))
        p.start()
        assert q.get(timeout=120) == "ready"
        cpu0 = _cpu(gw.pid)
        sent, send_s = q.get(timeout=120)
        p.join(10)
        t_end = time.monotonic() + 10
        stored = 0
        while time.monotonic() < t_end:
            stored = _stored(db, "bench")
            if stored >= sent:
                break
            time.sleep(0.1)
        time.sleep(0.2)
        stored = _stored(db, "bench")
        cpu = _cpu(gw.pid) - cpu0
    finally:
        gw.terminate()
        gw.wait(15)
    return {"rate": rate, "sent": sent, "stored": stored, "send_s": send_s, "cpu_s": cpu,
            "achieved": sent / send_s}  # fmt: skip


def in_process(tmp: Path, devs) -> dict:
    frames = _frames(devs, 60)  # 60,600 frames
    keyed = {d.device: d for d in devs}

    class Null:
        name = "null"

        def send(self, device, wire, addr):
            pass

    link = Null()
    st = Store(tmp / "inproc.db", "b")
    gw = Gateway(keyed, st, name="b", batch=2000)
    c0 = time.process_time()
    w0 = time.perf_counter()
    for w in frames:
        gw.handle(w, link, None)
    gw.close()
    wall = time.perf_counter() - w0
    total = time.process_time() - c0
    # Decode alone, same frames.
    c0 = time.process_time()
    decoded = [fr.decode(w) for w in frames]
    dec = time.process_time() - c0
    # Storage alone: the same rows, same batch size, into a fresh database.
    rows = []
    for f in decoded:
        x = f.fields
        t, li = x["temp_dc"], x["line_ca"]
        rows.append((f.device, 0.0, f.time, f.seq, x["residual_ma"], *t, *li, x["status"]))
    st2 = Store(tmp / "store.db", "b")
    c0 = time.process_time()
    for i in range(0, len(rows), 2000):
        st2.flush(rows[i : i + 2000], [], [], {}, {})
    sto = time.process_time() - c0
    st.close()
    st2.close()
    return {"n": len(frames), "wall": wall, "cpu": total, "decode": dec, "store": sto}


def events_in_process(tmp: Path, devs) -> dict:
    keyed = {d.device: d for d in devs}
    dets = [VirtualDetector(d.device, d.key or b"", retry_s=0) for d in devs]
    frames = []
    for k in range(5):
        for v in dets:
            v.raise_event(ev.ALARM if k % 2 else ev.PREALARM, ev.RESIDUAL, 320, 300)
            frames.append(v.uplink(0.0, host.now()))
            v.inflight = None  # as if ACKed: the next one gets a new counter

    class Null:
        name = "null"

        def send(self, device, wire, addr):
            pass

    st = Store(tmp / "events.db", "b")
    gw = Gateway(keyed, st, name="b")
    c0 = time.process_time()
    for w in frames:
        gw.handle(w or b"", Null(), None)
    gw.close()
    cpu = time.process_time() - c0
    n = st.db.execute("SELECT COUNT(*) FROM events").fetchone()[0]
    st.close()
    return {"n": len(frames), "stored": n, "cpu": cpu}


def _event_frames(devs, per_device: int) -> list[bytes]:
    dets = [VirtualDetector(d.device, d.key or b"", retry_s=0) for d in devs]
    frames = []
    for k in range(per_device):
        for v in dets:
            v.raise_event(ev.ALARM if k % 2 else ev.PREALARM, ev.RESIDUAL, 320, 300)
            frames.append(v.uplink(0.0, host.now()) or b"")
            v.inflight = None  # as if ACKed: the next one gets a new counter
    return frames


def durability(tmp: Path, devs, rounds: int = 3) -> dict:
    """Best-of-rounds wall seconds per level, NORMAL and FULL runs interleaved."""
    keyed = {d.device: d for d in devs}
    evs = _event_frames(devs, 1)  # 1010 events, one commit (and one ACK) each

    class Null:
        name = "null"

        def send(self, device, wire, addr):
            pass

    tel = [(d.device, 0.0, 0, k, 3, 250, 251, 252, 253, 100, 101, 102, 0)
           for k in range(30) for d in devs]  # fmt: skip
    best: dict[str, float] = {}
    for r in range(rounds):
        for level in ("NORMAL", "FULL"):
            st = Store(tmp / f"dur-ev-{level}-{r}.db", "b", ack_sync=level)
            gw = Gateway(keyed, st, name="b")
            link = Null()
            w0 = time.perf_counter()
            for w in evs:
                gw.handle(w, link, None)
                gw.flush()
            t = time.perf_counter() - w0
            assert st.db.execute("SELECT COUNT(*) FROM events").fetchone()[0] == len(evs)
            gw.close()
            st.close()
            best[f"ev_{level}"] = min(best.get(f"ev_{level}", t), t)
            st = Store(tmp / f"dur-tel-{level}-{r}.db", "b", base_sync=level, ack_sync=level)
            w0 = time.perf_counter()
            for i in range(0, len(tel), 1000):
                st.flush(tel[i : i + 1000], [], [], {}, {})
            t = time.perf_counter() - w0
            st.close()
            best[f"tel_{level}"] = min(best.get(f"tel_{level}", t), t)
    return {"n_ev": len(evs), "n_tel": len(tel), **best}


def run() -> list[dict]:
    devs = fleet_from_plan(load_plan(), SECRET)
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        write_registry(tmp / "fleet.csv", devs)
        best = None
        runs = []
        for rate in RATES:
            r = udp_run(tmp, rate)
            runs.append(r)
            print("[bench] gateway udp", json.dumps(r), file=sys.stderr)
            if r["stored"] == r["sent"] and r["achieved"] >= 0.97 * rate:
                best = r
            else:
                break
        if best is not None:
            rows.append({
                "name": "UDP ingest, 1010 detectors, zero loss (highest paced rate tried)",
                "value": round(best["stored"] / best["send_s"]), "unit": "frames/s",
                "target": f">= {TARGET_FPS}", "ok": best["stored"] / best["send_s"] >= TARGET_FPS,
            })  # fmt: skip
            rows.append({"name": "gateway CPU per stored frame at that rate (UDP, all in)",
                         "value": round(best["cpu_s"] / best["stored"] * 1e6, 1),
                         "unit": "us"})  # fmt: skip
        else:
            r = runs[0]
            rows.append(
                {
                    "name": "UDP ingest, 1010 detectors, zero loss",
                    "value": 0,
                    "unit": "frames/s",
                    "target": f">= {TARGET_FPS}",
                    "ok": False,
                }
            )
        for r in runs:
            rows.append(
                {
                    "name": f"UDP at {r['rate']:,}/s paced: frames lost",
                    "value": r["sent"] - r["stored"],
                    "unit": "frames",
                    "target": "0" if r["rate"] == TARGET_FPS else "",
                    "ok": (r["sent"] == r["stored"]) if r["rate"] == TARGET_FPS else None,
                }
            )
        p = in_process(tmp, devs)
        rows.append(
            {
                "name": "in-process pipeline (decode+dedup+SQLite), no sockets",
                "value": round(p["n"] / p["cpu"]),
                "unit": "frames/s CPU",
            }
        )
        rows.append(
            {
                "name": "CPU share: decode (protocol.frame.decode)",
                "value": round(100 * p["decode"] / p["cpu"], 1),
                "unit": "%",
            }
        )
        rows.append(
            {
                "name": "CPU share: storage (SQLite batch insert + commit)",
                "value": round(100 * p["store"] / p["cpu"], 1),
                "unit": "%",
            }
        )
        rows.append(
            {
                "name": "CPU share: gateway logic (registry, dedup, rows, counters)",
                "value": round(100 * (p["cpu"] - p["decode"] - p["store"]) / p["cpu"], 1),
                "unit": "%",
            }
        )
        e = events_in_process(tmp, devs)
        rows.append(
            {
                "name": "authenticated events (HMAC check, UNIQUE insert, tagged ACK)",
                "value": round(e["n"] / e["cpu"]),
                "unit": "events/s CPU",
                "ok": e["stored"] == e["n"],
            }
        )
        d = durability(tmp, devs)
        for level in ("NORMAL", "FULL"):
            rows.append({"name": f"events, one commit + ACK each, event batches at {level}",
                         "value": round(d["n_ev"] / d[f"ev_{level}"]),
                         "unit": "events/s wall"})  # fmt: skip
        rows.append({"name": "durable ACK cost: events/s FULL / NORMAL (1 = free)",
                     "value": round(d["ev_NORMAL"] / d["ev_FULL"], 3),
                     "unit": "ratio"})  # fmt: skip
        for level in ("NORMAL", "FULL"):
            rows.append({"name": f"telemetry, 1000-row batches, connection at {level}",
                         "value": round(d["n_tel"] / d[f"tel_{level}"]),
                         "unit": "rows/s wall"})  # fmt: skip
        rows.append({"name": "FULL everywhere: telemetry rows/s FULL / NORMAL (not used)",
                     "value": round(d["tel_NORMAL"] / d["tel_FULL"], 3),
                     "unit": "ratio"})  # fmt: skip
    return [{k: v for k, v in r.items() if v is not None and v != ""} for r in rows]
