"""Roll a signed update image out to detectors: `python -m tools.gateway update`.

    python -m tools.gateway update --registry fleet.csv --udp 0.0.0.0:47100 \\
        --devices 0x12345678,0x12345679 --addr 0x12345678=10.0.0.7:47000 ... IMAGE.efu
    python -m tools.gateway update --registry fleet.csv --serial /dev/ttyUSB0 --devices ... IMAGE

The image is made and signed by `python -m tools.fwimage build` (make image-sign). Devices are
updated in waves (--waves 1,4,16: the first wave one device, then four, then sixteen, then
the rest in waves of the last size); each device gets the image over the protocol's UPDATE
frames (protocol/SPEC.md section 12: begin, chunks strictly in order from what the detector
reports it has, so an interrupted transfer resumes), the detector checks the vendor signature
and version, copies the files into its spare slot checking each hash, and on `install` boots
it on trial; the rollout then waits until the new image has confirmed itself (it ran its trial
windows without error) or the detector rolled back. The rollout stops after the wave in which
a device failed (no answer, refused the image, or did not confirm): later waves are not
started. Progress goes to stderr, one line per device and step; per-device results go to the
database (--db: table `updates`, and `devices.fw` on a confirmation) and, with --json, stdout.

Run it while no gateway uses the same link (stop the gateway, or give the gateway and the
rollout different UDP ports with the detectors' host address pointing here): it talks to the
detectors itself. Events that arrive meanwhile are not acknowledged, so the detectors keep
them and deliver them to the gateway afterwards (SPEC.md section 8). Host counters come from
the time floor (rule H2), as a restarted gateway's do.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from queue import Empty, Queue
from typing import Any, Protocol

from protocol import frame as fr
from protocol import host
from protocol import messages as M
from protocol.auth import Key
from protocol.session import Peer
from protocol.stream import StreamDecoder
from tools.gateway.core import host_counter_floor

# How far the rollout's host counters may run ahead of the time floor (4 a second; SPEC.md
# section 7.3 rule H2): 10 s worth.
AHEAD = 40
# What a status error means for the rollout: fatal ones end this device's update.
FATAL = ("bad_signature", "downgrade", "bad_image", "bad_hash", "too_large", "no_key")


class Link(Protocol):
    """A way to reach detectors: send one downlink frame, get the frames that answer it."""

    def exchange(self, device: int, wire: bytes, wait: float) -> list[fr.Frame]: ...

    def idle(self, seconds: float) -> None: ...


@dataclass
class Result:
    device: int
    image: str = ""  # the image id, 0x........
    version: str = ""  # the image's version
    ok: bool = False
    state: str = "pending"  # pending, sending, checking, trial, confirmed, failed
    error: str = ""
    fw_before: list[int] | None = None
    fw_after: list[int] | None = None
    sent: int = 0  # image bytes sent (resends included)
    frames: int = 0
    started: float = 0.0
    finished: float = 0.0
    log: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in ("image", "version", "ok", "state", "error")}
        d["sent"] = self.sent
        d["frames"] = self.frames
        d["device"] = f"0x{self.device:08x}"
        d["fw_before"] = ".".join(map(str, self.fw_before)) if self.fw_before else None
        d["fw_after"] = ".".join(map(str, self.fw_after)) if self.fw_after else None
        d["seconds"] = round(self.finished - self.started, 3)
        return d


class DeviceUpdate:
    """One detector's update over `link`: transfer, check, install, confirmation."""

    def __init__(
        self,
        device: int,
        key: bytes,
        image: bytes,
        link: Link,
        progress: Callable[[str], None] | None = None,
        wait: float = 1.0,
        tries: int = 8,
        chunk: int = host.UP_MAX_CHUNK,
        confirm_timeout: float | None = None,
        poll_s: float = 1.0,
        counter: Callable[[], int] | None = None,
        ahead: int = AHEAD,
    ):
        from tools import fwimage

        self.device = device
        self.image = image
        self.img = fwimage.parse(image)
        self.link = link
        self.wait = wait
        self.tries = tries
        self.chunk = min(chunk, host.UP_MAX_CHUNK)
        self.poll_s = poll_s
        # Trial windows of 100 ms, the reboot and a margin.
        self.confirm_timeout = confirm_timeout or self.img.confirm * 0.1 * 2 + 60
        self.last = 0
        self.ahead = ahead
        k = Key(key)
        self.enc = fr.Encoder(device, k, counter or self._counter)
        self.peer = Peer(k, 0, host.HOST_REQUIRES, uplink=True)
        self.res = Result(
            device, f"{self.img.id:#010x}", ".".join(str(x) for x in self.img.version)
        )
        self._progress = progress
        self._pct = -1

    def _counter(self) -> int:
        """The next host counter: above the time floor (rule H2) and never more than
        `ahead` counters above it, so a gateway or another rollout started right after this
        one (at the floor) is at most ahead / 4 s behind the detector's mark for UPDATE and
        ACK frames (SPEC.md section 12.3); with the default, a frame a 250 ms on average."""
        while True:
            floor = host_counter_floor(time.time())
            if self.last + 1 <= floor + self.ahead:
                break
            time.sleep(0.05)
        self.last = max(self.last + 1, floor)
        return self.last

    def say(self, text: str) -> None:
        line = f"0x{self.device:08x}: {text}"
        self.res.log.append(line)
        if self._progress:
            self._progress(line)

    # -- one request, its status ------------------------------------------------------------
    def ask(self, fields: dict[str, Any], tries: int | None = None) -> dict[str, Any] | None:
        """Send an UPDATE (a new frame each try: ops are idempotent) until an authentic
        UPDATE_STATUS answers; None after `tries` tries."""
        fields = dict(fields, image=self.img.id)
        for _ in range(tries or self.tries):
            wire = self.enc.message(M.UPDATE, host.efd_time(int(time.time())), fields, auth=True)
            self.res.frames += 1
            for f in self.link.exchange(self.device, wire, self.wait):
                if f.type != M.UPDATE_STATUS or f.device != self.device:
                    continue
                if self.peer.check(f) is None:
                    d = dict(f.fields)
                    d["counter"] = f.counter
                    return d
        return None

    # -- the whole update ---------------------------------------------------------------------
    def run(self) -> Result:
        r = self.res
        r.started = time.time()
        try:
            self._run()
        finally:
            r.finished = time.time()
        return r

    def _fail(self, error: str) -> Result:
        self.res.state = "failed"
        self.res.error = error
        self.say(f"failed: {error}")
        return self.res

    def _run(self) -> Result:
        r = self.res
        img = self.img
        size = len(self.image)
        want = list(img.version)
        st = self.ask({"op": "begin", "size": size})
        if st is None:
            return self._fail("no answer")
        r.fw_before = st["fw"]
        if st["fw"] == want and st["state"] == "idle" and st["image"] == img.id:
            r.ok, r.state, r.fw_after = True, "confirmed", want
            self.say("already runs this image")
            return r
        restarts = 0
        boot_at_install = None
        r.state = "sending"
        while True:
            if st is None:
                return self._fail("no answer")
            err, state = st["result"], st["state"]
            if err in FATAL:
                return self._fail(err)
            if state == "trial":
                if boot_at_install is None:
                    return self._fail("busy: another image is on trial")
                break
            if state == "idle" or st["image"] != img.id:  # (another image's session: take over)
                restarts += 1
                if restarts > 3:
                    return self._fail(err if err != "ok" else "restarted too often")
                st = self.ask({"op": "begin", "size": size})
            elif state == "receiving":
                have = st["have"]
                pct = have * 100 // size
                if pct // 10 != self._pct // 10:
                    self.say(f"sending {pct} % ({have} of {size} bytes)")
                self._pct = pct
                data = self.image[have : have + self.chunk]
                r.sent += len(data)
                st = self.ask({"op": "chunk", "offset": have, "data": data})
            elif state == "checking":
                if r.state != "checking":
                    self.say(f"checking ({st['have']} of {size} bytes here)")
                r.state = "checking"
                self.link.idle(0.2)
                st = self.ask({"op": "status"})
            elif state == "ready":
                self.say("verified: install")
                r.state = "trial"
                boot_at_install = st["counter"] >> 16
                # Its answer may not come: the detector reboots as soon as it is out.
                self.ask({"op": "install"}, tries=1)
                break
            else:
                return self._fail(f"unexpected state {state}")
        return self._confirm(boot_at_install, want)

    def _confirm(self, boot: int, want: list[int]) -> Result:
        """After install: poll until the new image confirmed itself or the detector rolled
        back. Only statuses from a later boot than the install's count (not a replay)."""
        r = self.res
        self.say("installed, on trial")
        end = time.monotonic() + self.confirm_timeout
        while time.monotonic() < end:
            self.link.idle(self.poll_s)
            st = self.ask({"op": "status"}, tries=1)
            if st is None:
                continue
            if st["counter"] >> 16 <= boot:  # not rebooted yet: the install was lost?
                if st["state"] == "ready":
                    self.ask({"op": "install"}, tries=1)
                continue
            if st["state"] == "trial":
                continue
            r.fw_after = st["fw"]
            if st["state"] == "idle" and st["fw"] == want and st["result"] == "ok":
                r.ok = True
                r.state = "confirmed"
                self.say("confirmed: runs " + ".".join(map(str, want)))
                return r
            if st["result"] == "rolled_back" or st["fw"] != want:
                return self._fail("rolled back to " + ".".join(map(str, st["fw"])))
        return self._fail("no confirmation")


def waves(devices: list[int], sizes: list[int]) -> list[list[int]]:
    """Split devices into waves of the given sizes; the last size repeats."""
    out = []
    i = 0
    k = 0
    while i < len(devices):
        n = max(1, sizes[min(k, len(sizes) - 1)])
        out.append(devices[i : i + n])
        i += n
        k += 1
    return out


def rollout(
    devices: list[int],
    keys: dict[int, bytes],
    image: bytes,
    link: Link,
    sizes: list[int],
    progress: Callable[[str], None] = lambda s: None,
    parallel: bool = True,
    record: Callable[[Result], None] | None = None,
    **kw: Any,
) -> tuple[bool, list[Result]]:
    """Update devices wave by wave; stop after the first wave with a failure. Returns
    (all ok, results of the devices started)."""
    results: list[Result] = []
    plan = waves(devices, sizes)
    for n, wave in enumerate(plan, 1):
        progress(f"wave {n}/{len(plan)}: {len(wave)} device(s)")
        ups = [DeviceUpdate(d, keys[d], image, link, progress, **kw) for d in wave]
        if parallel and len(ups) > 1:
            threads = [threading.Thread(target=u.run, daemon=True) for u in ups]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        else:
            for u in ups:
                u.run()
        for u in ups:
            results.append(u.res)
            if record is not None:
                record(u.res)
        failed = [u.res for u in ups if not u.res.ok]
        if failed:
            left = sum(len(w) for w in plan[n:])
            progress(
                f"stopped: {len(failed)} device(s) failed in wave {n}"
                + (f"; {left} device(s) not started" if left else "")
            )
            return False, results
    progress(f"done: {len(results)} device(s) updated")
    return True, results


# -- links ---------------------------------------------------------------------------------------
class UdpLink:
    """Detectors over UDP: frames to each device's address, answers to our bound port."""

    def __init__(self, bind: tuple[str, int], addrs: dict[int, tuple[str, int]]):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(bind)
        self.sock.settimeout(0.05)
        self.addrs = dict(addrs)
        self.queues: dict[int, Queue] = {}
        self.lock = threading.Lock()
        self._stop = False
        self.thread = threading.Thread(target=self._rx, daemon=True)
        self.thread.start()

    def _q(self, device: int) -> Queue:
        with self.lock:
            return self.queues.setdefault(device, Queue())

    def _rx(self) -> None:
        dec = StreamDecoder(uplink=True)
        while not self._stop:
            try:
                data = self.sock.recvfrom(65535)[0]
            except TimeoutError:
                continue
            except OSError:
                return
            for f in dec.feed(data):
                if f.ok:
                    self._q(f.device).put(f)

    def exchange(self, device: int, wire: bytes, wait: float) -> list[fr.Frame]:
        q = self._q(device)
        while not q.empty():  # answers to earlier tries: stale
            q.get_nowait()
        self.sock.sendto(wire, self.addrs[device])
        out: list[fr.Frame] = []
        end = time.monotonic() + wait
        while True:
            left = end - time.monotonic()
            if left <= 0:
                return out
            try:
                f = q.get(timeout=left)
            except Empty:
                return out
            out.append(f)
            if f.type == M.UPDATE_STATUS:
                return out

    def idle(self, seconds: float) -> None:
        time.sleep(seconds)

    def close(self) -> None:
        self._stop = True
        self.thread.join(1)
        self.sock.close()


class SerialLink:
    """Detectors on a serial line (RS-485 polled, or one detector's UART/pty): one frame out,
    the answers read until one UPDATE_STATUS or the wait ends. One device at a time."""

    def __init__(self, port: str, baud: int = 9600):
        import serial

        self.ser = serial.Serial(port, baud, timeout=0.02)
        self.dec = StreamDecoder(uplink=True)
        self.lock = threading.Lock()

    def exchange(self, device: int, wire: bytes, wait: float) -> list[fr.Frame]:
        with self.lock:
            self.ser.reset_input_buffer()
            self.ser.write(b"\x00" + wire)
            out = []
            end = time.monotonic() + wait
            while time.monotonic() < end:
                data = self.ser.read(256)
                for f in self.dec.feed(data) if data else ():
                    if f.ok and f.device == device:
                        out.append(f)
                        if f.type == M.UPDATE_STATUS:
                            return out
            return out

    def idle(self, seconds: float) -> None:
        time.sleep(seconds)

    def close(self) -> None:
        self.ser.close()


# -- records ---------------------------------------------------------------------------------------
def record_to(db_target: str) -> Callable[[Result], None]:
    """A recorder writing each device's result into the gateway database (table `updates`,
    migration m0020; `devices.fw` when the new image confirmed itself)."""
    from tools.gateway import migrations
    from tools.gateway.db import open_db

    db = open_db(db_target)
    migrations.upgrade(db)

    def record(r: Result) -> None:
        d = r.to_dict()
        with db.tx():
            db.execute(
                "INSERT INTO updates(device, image, version, ok, state, error, fw_before, "
                "fw_after, bytes_sent, started, finished) VALUES (?,?,?,?,?,?,?,?,?,?,?)",
                (
                    r.device,
                    r.image,
                    r.version,
                    1 if r.ok else 0,
                    r.state,
                    r.error,
                    d["fw_before"],
                    d["fw_after"],
                    r.sent,
                    r.started,
                    r.finished,
                ),
            )
            if r.ok and d["fw_after"]:
                db.execute("UPDATE devices SET fw = ? WHERE device = ?", (d["fw_after"], r.device))

    return record


# -- the CLI (registered by tools/gateway/cli.py) -------------------------------------------------
def add_parser(sub: Any) -> None:
    doc = __doc__ or ""
    u = sub.add_parser(
        "update",
        help="roll a signed update image out to detectors, in waves",
        description=doc.split("\n\n")[0],
        epilog="\n\n".join(doc.split("\n\n")[1:]),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    u.add_argument("image", metavar="IMAGE", help="the signed image (python -m tools.fwimage)")
    u.add_argument("--registry", required=True, help="fleet registry CSV (device keys)")
    u.add_argument("--devices", required=True, help="device ids, comma-separated, in order")
    via = u.add_mutually_exclusive_group(required=True)
    via.add_argument("--udp", metavar="HOST:PORT", help="bind here; detectors answer to it")
    via.add_argument("--serial", metavar="PORT", help="the RS-485 adapter (or a UART/pty)")
    u.add_argument("--baud", type=int, default=9600, help="serial speed (default 9600)")
    u.add_argument(
        "--addr",
        action="append",
        default=[],
        metavar="ID=HOST:PORT",
        help="a detector's UDP address (else from --db's devices.address)",
    )
    u.add_argument("--waves", default="1,4,16", help="wave sizes; the last repeats (1,4,16)")
    u.add_argument("--db", help="record results in this gateway database (SQLite/PostgreSQL)")
    u.add_argument("--wait", type=float, default=1.0, help="seconds to wait for each answer")
    u.add_argument("--json", action="store_true", help="print the per-device results as JSON")
    u.add_argument(
        "--ahead",
        type=float,
        default=AHEAD / 4,
        metavar="SECONDS",
        help="how far host counters may run ahead of the time floor (default 10 s: a frame "
        "a 250 ms on average; more is faster, but a gateway restarted meanwhile has its ACKs "
        "refused for up to that long, until the detector reboots: SPEC.md 12.3)",
    )


def _hostport(text: str) -> tuple[str, int]:
    h, _, p = text.rpartition(":")
    if not h or not p.isdigit():
        raise ValueError(f"bad address {text!r}: expected HOST:PORT")
    return h, int(p)


def _db_addrs(db_target: str, devices: list[int]) -> dict[int, tuple[str, int]]:
    from tools.gateway.db import open_db

    out = {}
    with contextlib.closing(open_db(db_target, readonly=True)) as db:
        for d in devices:
            row = db.execute(
                "SELECT transport, address FROM devices WHERE device = ?", (d,)
            ).fetchone()
            if row and row[0] == "udp" and row[1]:
                with contextlib.suppress(ValueError):
                    out[d] = _hostport(str(row[1]))
    return out


def cmd_update(args: argparse.Namespace) -> int:
    from tools import fwimage
    from tools.gateway.db import DbError, db_errors, mask
    from tools.gateway.migrations import SchemaError
    from tools.gateway.registry import RegistryError, load_registry, parse_device_id

    try:
        try:
            image = Path(args.image).read_bytes()
        except OSError as e:
            raise ValueError(f"cannot read image {args.image}: {e.strerror or e}") from None
        img = fwimage.parse(image)
        devices = [parse_device_id(x) for x in args.devices.replace(",", " ").split()]
        sizes = [int(x) for x in args.waves.split(",")]
        reg = load_registry(args.registry)
        keys: dict[int, bytes] = {}
        for d in devices:
            dev = reg.get(d)
            if dev is None or not dev.key:
                raise ValueError(f"device 0x{d:08x} has no key in {args.registry}")
            keys[d] = dev.key
        link: Any
        if args.udp:
            addrs = {}
            for a in args.addr:
                d, _, hp = a.partition("=")
                addrs[parse_device_id(d)] = _hostport(hp)
            rest = [d for d in devices if d not in addrs]
            if rest and args.db:
                with contextlib.suppress(FileNotFoundError):
                    addrs.update(_db_addrs(args.db, rest))
            missing = [f"0x{d:08x}" for d in devices if d not in addrs]
            if missing:
                raise ValueError(f"no UDP address for {', '.join(missing)}: --addr ID=HOST:PORT")
            link = UdpLink(_hostport(args.udp), addrs)
        else:
            link = SerialLink(args.serial, args.baud)
        # The database the results go to: opened (and migrated) before anything is sent.
        record = record_to(args.db) if args.db else None
    except (ValueError, OSError, RegistryError, SchemaError, DbError, fwimage.ImageError) as e:
        # OSError: the serial port or the UDP socket (pyserial's errors are OSErrors).
        print(f"python -m tools.gateway update: error: {e}", file=sys.stderr)
        return 2
    except db_errors() as e:
        print(f"python -m tools.gateway update: error: {mask(args.db)}: {e}", file=sys.stderr)
        return 2
    version = ".".join(map(str, img.version))
    print(
        f"update {args.image}: version {version}, {len(image)} bytes, image id {img.id:#010x}, "
        f"{len(devices)} device(s)",
        file=sys.stderr,
    )

    try:
        ok, results = rollout(
            devices,
            keys,
            image,
            link,
            sizes,
            progress=lambda s: print(s, file=sys.stderr, flush=True),
            parallel=bool(args.udp),
            record=record,
            wait=args.wait,
            ahead=int(args.ahead * 4),
        )
    finally:
        link.close()
    if args.json:
        print(json.dumps([r.to_dict() for r in results]))
    return 0 if ok else 1
