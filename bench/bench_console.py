"""How fast an alarm reaches the operator (issue 15): end-to-end latency from the detector's
window (the moment a virtual detector decides an alarm, `VirtualDetector.raise_event`) to

  - the decoded event on MQTT (`efd/json/<device>/event`, what a platform receives), and
  - the case on the console's alarm board (`/board.json`, the data the board page fetches),

over UDP (one datagram per frame, as the fleet simulator sends) and over a polled RS-485 bus
(a pty; the gateway is the master polling 8 detectors once a second, its default cycle), with
the real processes: `python -m tools.gateway run` (UDP + serial + MQTT) writing SQLite, a
Mosquitto broker (scripts/broker.sh), `python -m tools.console run` reading the same database.
p50 / p99 over 24 alarms per link (each on its own device and channel, so each opens a case).

The board page itself refreshes its rows every second (a fetch), so a person sees the case up
to 1 s after the figure here. Bounded: about 30 s.
"""

from __future__ import annotations

import json
import os
import pty
import random
import re
import select
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import tty
from pathlib import Path

from efd import events as ev
from protocol import host
from tools.console import users as U
from tools.fleet.detector import VirtualDetector
from tools.gateway.registry import fleet_from_plan, load_plan, write_registry

ROOT = Path(__file__).resolve().parents[1]
SECRET = b"bench-console-secret"
N_UDP = 24
BUS = 8  # detectors on the RS-485 bus
CHANNELS = (ev.RESIDUAL, ev.TEMP0, ev.TEMP0 + 1)  # 3 alarms per bus detector: 24
POLL_S = 1.0
GAP_S = 0.3
PW = "bench console password"
TARGET_S = 2.0  # detector window -> board: within one poll cycle + the board's 1 s refresh


def _free_port(kind: int = socket.SOCK_STREAM) -> int:
    s = socket.socket(socket.AF_INET, kind)
    s.bind(("127.0.0.1", 0))
    p = int(s.getsockname()[1])
    s.close()
    return p


def _pct(xs: list[float], q: float) -> float:
    s = sorted(xs)
    k = (len(s) - 1) * q
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


class _Bus(threading.Thread):
    """The detectors' side of the RS-485 bus on a pty: each addressed frame goes to its detector,
    whose one answer goes back on the wire."""

    def __init__(self, master: int, dets: dict[int, VirtualDetector], lock: threading.Lock):
        super().__init__(daemon=True)
        self.master, self.dets, self.lock = master, dets, lock
        self.stop = threading.Event()

    def run(self) -> None:
        from protocol import frame as fr

        buf = b""
        while not self.stop.is_set():
            r, _, _ = select.select([self.master], [], [], 0.02)
            if not r:
                continue
            try:
                buf += os.read(self.master, 4096)
            except OSError:
                return
            *segs, buf = buf.split(b"\x00")
            for seg in segs:
                f = fr.decode(seg) if seg else None
                if f is None or not f.ok or f.device not in self.dets:
                    continue
                with self.lock:
                    out = self.dets[f.device].downlink(seg + b"\x00", time.monotonic(), host.now())
                for o in out:
                    os.write(self.master, o)


class _Udp(threading.Thread):
    """UDP detectors behind one socket (like the fleet simulator): sends their events, feeds
    the gateway's ACKs back to them."""

    def __init__(self, port: int, dets: dict[int, VirtualDetector], lock: threading.Lock):
        super().__init__(daemon=True)
        self.s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.s.bind(("127.0.0.1", 0))
        self.dst = ("127.0.0.1", port)
        self.dets, self.lock = dets, lock
        self.stop = threading.Event()

    def send_pending(self) -> None:
        with self.lock:
            for d in self.dets.values():
                w = d.uplink(time.monotonic(), host.now())
                if w is not None:
                    self.s.sendto(w, self.dst)

    def run(self) -> None:
        from protocol import frame as fr

        while not self.stop.is_set():
            r, _, _ = select.select([self.s], [], [], 0.05)
            if r:
                data = self.s.recv(65535)
                for seg in data.split(b"\x00"):
                    f = fr.decode(seg) if seg else None
                    if f is None or not f.ok or f.device not in self.dets:
                        continue
                    with self.lock:
                        self.dets[f.device].downlink(seg + b"\x00", time.monotonic(), host.now())
            self.send_pending()  # retransmissions


class _Watch(threading.Thread):
    """Polls the console's board every 10 ms; first time each (device, channel) shows."""

    def __init__(self, base: str):
        super().__init__(daemon=True)
        import httpx

        self.c = httpx.Client(base_url=base, timeout=5)
        r = self.c.get("/login")
        tok = re.search(r'name="csrf" value="([^"]+)"', r.text)
        assert tok, "no login form"
        r = self.c.post("/login", data={"username": "bench", "password": PW,
                                        "csrf": tok.group(1)})  # fmt: skip
        assert r.status_code in (200, 303), r.status_code
        self.seen: dict[tuple[int, str], float] = {}
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                rows = self.c.get("/board.json").json()
            except Exception:
                time.sleep(0.05)
                continue
            now = time.time()
            for r in rows:
                self.seen.setdefault((r["device"], r["channel"]), now)
            time.sleep(0.01)


def _mqtt_watch(port: int, pwfile: Path, seen: dict[tuple[int, str], float]):
    import paho.mqtt.client as mqtt

    ready = threading.Event()

    def on_connect(c, u, flags, reason, props):
        c.subscribe("efd/json/+/event", 1)

    def on_message(c, u, msg):
        t = time.time()
        try:
            d = json.loads(msg.payload)
            seen.setdefault((int(d["device"]), str(d["channel"])), t)
        except (ValueError, KeyError, TypeError):
            pass

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.username_pw_set("operator", pwfile.read_text().strip())
    c.on_connect, c.on_message = on_connect, on_message
    c.on_subscribe = lambda *a: ready.set()
    c.connect("127.0.0.1", port, keepalive=30)
    c.loop_start()
    if not ready.wait(10):
        raise RuntimeError("MQTT subscription not confirmed")
    return c


def _wait_file(p: Path, proc: subprocess.Popen, what: str, timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while not p.exists():
        if proc.poll() is not None or time.monotonic() > end:
            raise RuntimeError(f"{what} did not start")
        time.sleep(0.05)


def _wait_http(url: str, proc: subprocess.Popen, timeout: float = 30) -> None:
    import httpx

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise RuntimeError("console did not start")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            time.sleep(0.1)
    raise RuntimeError("console did not answer")


def measure(tmp: Path) -> dict[str, dict[str, list[float]]]:
    broker_dir = tmp / "broker"
    r = subprocess.run([str(ROOT / "scripts/broker.sh"), "start", str(broker_dir)],
                       capture_output=True, text=True, timeout=300)  # fmt: skip
    if r.returncode != 0:
        raise RuntimeError("no MQTT broker: " + r.stderr.strip())
    mport = int(r.stdout.strip().splitlines()[-1])
    procs: list[subprocess.Popen] = []
    threads: list = []
    master = slave = -1
    try:
        devs = fleet_from_plan(load_plan(), SECRET)[: N_UDP + BUS]
        write_registry(tmp / "fleet.csv", devs)
        udp_devs, bus_devs = devs[:N_UDP], devs[N_UDP:]
        master, slave = pty.openpty()
        tty.setraw(slave)
        udp_port = _free_port(socket.SOCK_DGRAM)
        db = tmp / "efd.db"
        log = open(tmp / "gateway.log", "wb")  # noqa: SIM115 - closed with the process
        gw = subprocess.Popen(
            [sys.executable, "-m", "tools.gateway", "run", "--registry", str(tmp / "fleet.csv"),
             "--db", str(db), "--name", "bench", "--udp", f"127.0.0.1:{udp_port}",
             "--serial", f"{os.ttyname(slave)}@115200", "--poll",
             ",".join(str(d.device) for d in bus_devs), "--poll-interval", str(POLL_S),
             "--mqtt", f"127.0.0.1:{mport}", "--mqtt-user", "gateway", "--mqtt-password-file",
             str(broker_dir / "users" / "gateway"), "--no-republish-telemetry",
             "--ready-file", str(tmp / "ready")],
            cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
        procs.append(gw)
        _wait_file(tmp / "ready", gw, "gateway")
        U.add_user(tmp / "users.json", "bench", "supervisor", PW)
        cport = _free_port()
        con = subprocess.Popen(
            [sys.executable, "-m", "tools.console", "run", "--db", str(db), "--users",
             str(tmp / "users.json"), "--port", str(cport), "--sync-interval", "0.05"],
            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        procs.append(con)
        base = f"http://127.0.0.1:{cport}"
        _wait_http(base + "/healthz", con)
        mqtt_seen: dict[tuple[int, str], float] = {}
        mq = _mqtt_watch(mport, broker_dir / "users" / "operator", mqtt_seen)
        lock = threading.Lock()
        udp_dets = {d.device: VirtualDetector(d.device, d.key or b"") for d in udp_devs}
        bus_dets = {
            d.device: VirtualDetector(d.device, d.key or b"", retry_s=60, polled=True)
            for d in bus_devs
        }
        udp = _Udp(udp_port, udp_dets, lock)
        bus = _Bus(master, bus_dets, lock)
        watch = _Watch(base)
        threads = [udp, bus, watch]
        for t in threads:
            t.start()
        time.sleep(POLL_S * 1.5)  # the bus has been polled once
        rng = random.Random(15)
        t0: dict[str, dict[tuple[int, str], float]] = {"UDP": {}, "RS-485 polled": {}}
        plan = [("UDP", d.device, ev.RESIDUAL) for d in udp_devs]
        plan += [("RS-485 polled", d.device, ch) for ch in CHANNELS for d in bus_devs]
        rng.shuffle(plan)
        names = {ev.RESIDUAL: "residual", ev.TEMP0: "temp0", ev.TEMP0 + 1: "temp1"}
        for link, dev, ch in plan:
            dets = udp.dets if link == "UDP" else bus.dets
            value, thr = (320, 300) if ch == ev.RESIDUAL else (760, 700)
            with lock:
                dets[dev].raise_event(ev.ALARM, ch, value, thr)
                t0[link][(dev, names[ch])] = time.time()
            if link == "UDP":
                udp.send_pending()
            time.sleep(GAP_S * (0.5 + rng.random()))
        end = time.monotonic() + POLL_S * 3 + 5
        want = {k for d in t0.values() for k in d}
        while time.monotonic() < end and not (want <= set(watch.seen) and want <= set(mqtt_seen)):
            time.sleep(0.05)
        for t in threads:
            t.stop.set()
        mq.disconnect()
        mq.loop_stop()
        out: dict[str, dict[str, list[float]]] = {}
        for link, starts in t0.items():
            out[link] = {
                "board": [watch.seen[k] - s for k, s in starts.items() if k in watch.seen],
                "mqtt": [mqtt_seen[k] - s for k, s in starts.items() if k in mqtt_seen],
                "n": [float(len(starts))],
            }
        return out
    finally:
        for p in procs:
            p.terminate()
            try:
                p.wait(10)
            except subprocess.TimeoutExpired:
                p.kill()
        for fd in (master, slave):
            if fd >= 0:
                os.close(fd)
        subprocess.run([str(ROOT / "scripts/broker.sh"), "stop", str(broker_dir)],
                       capture_output=True, timeout=60, check=False)  # fmt: skip


def run() -> list[dict]:
    tmp = Path(tempfile.mkdtemp(prefix="bench-console-"))
    try:
        res = measure(tmp)
    except RuntimeError as e:
        return [{"name": f"console latency: not measured ({e})", "value": 0, "unit": "",
                 "ok": False}]  # fmt: skip
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    rows = []
    for link, r in res.items():
        n = int(r["n"][0])
        for what, label in (("mqtt", "MQTT JSON"), ("board", "case on the alarm board")):
            xs = r[what]
            ok = len(xs) == n
            for q, qn in ((0.5, "p50"), (0.99, "p99")):
                v = _pct(xs, q) * 1000 if xs else float("nan")
                row = {
                    "name": f"{link}: detector window -> {label}, {qn} ({len(xs)}/{n} alarms)",
                    "value": round(v, 1),
                    "unit": "ms",
                }
                if what == "board" and qn == "p99":
                    row["target"] = f"<= {TARGET_S * 1000:.0f} ms"
                    row["ok"] = ok and v <= TARGET_S * 1000
                elif not ok:
                    row["ok"] = False
                rows.append(row)
    return rows


if __name__ == "__main__":
    for r in run():
        print(r)
