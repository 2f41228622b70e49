"""`python -m tools.gateway run`: the asyncio service around core.Gateway.

Start-up order: the listeners first (UDP sockets bound, serial ports opened), then the database,
then the gateway. A listener that cannot start (a busy port, a missing serial device) or a
database that cannot be opened ends the start with StartError, one line naming what failed,
and leaves nothing behind: no database file is created for a gateway that never ran.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import os
import signal
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tools.gateway.core import Gateway
from tools.gateway.db import db_errors, mask
from tools.gateway.registry import Device
from tools.gateway.store import Store

log = logging.getLogger("efd.gateway")


class StartError(Exception):
    """The gateway could not start (a listener or the database): one line for the user."""


# Plain words for the socket errors a user meets when binding.
_BIND_HINTS = {
    errno.EADDRINUSE: "address already in use (another gateway, or another program, is "
    "listening there; pick another port or stop it)",
    errno.EADDRNOTAVAIL: "not an address of this machine",
    errno.EACCES: "permission denied (ports below 1024 need privileges)",
}


def _bind_error(what: str, e: OSError) -> StartError:
    hint = _BIND_HINTS.get(e.errno or 0) or e.strerror or str(e)
    return StartError(f"cannot listen on {what}: {hint}")


def open_store(path: str, name: str) -> Store:
    """The database, or StartError in one line (a missing directory, a file that is not a
    gateway database, no permission; a PostgreSQL server that cannot be reached, a bad URL,
    no psycopg; a schema newer than this gateway). A URL's password is never printed."""
    from tools.gateway.db import DbError, db_errors, is_url, mask
    from tools.gateway.migrations import SchemaError

    if not is_url(path):
        parent = Path(path).resolve().parent
        if not parent.is_dir():
            raise StartError(f"--db {path}: directory {parent} does not exist")
    try:
        return Store(path, gateway=name)
    except (DbError, SchemaError) as e:
        raise StartError(f"--db {mask(path)}: {e}") from None
    except db_errors() as e:  # sqlite3 OperationalError included: cannot open, locked...
        raise StartError(f"--db {mask(path)}: cannot open the database ({e})") from None


@dataclass
class Options:
    db: str
    devices: dict[int, Device]
    name: str = ""
    udp: list[tuple[str, int]] = field(default_factory=list)
    mqtt: tuple[str, int] | None = None
    mqtt_ingest: bool = True
    mqtt_user: str | None = None
    mqtt_password: str | None = field(default=None, repr=False)  # never logged
    share: str | None = None
    prefix: str = "efd"
    serial: list[tuple[str, int]] = field(default_factory=list)
    poll: list[int] = field(default_factory=list)
    reply_timeout: float | None = None  # None: 150 ms + a 256-byte frame at the baud rate
    poll_interval: float = 1.0
    flush_interval: float = 0.05
    command_retry: float = 2.0  # SPEC.md section 8 (UDP/MQTT): first timeout, doubling
    command_retry_max: float = 30.0
    command_tries: int = 5
    batch: int = 2000
    republish_telemetry: bool = True
    raw_json: bool = False  # republish the wire's integers, not physical units
    duration: float | None = None
    ready_file: str | None = None
    stats_every: float = 30.0


def _listeners(o: Options) -> tuple[list[Any], list[Any]]:
    """Bind the UDP sockets and open the serial ports (their gateway is attached later), or
    close whatever was opened and raise StartError naming the address or port."""
    from tools.gateway.transports import SerialLink, UdpLink

    udp: list[Any] = []
    serial: list[Any] = []
    try:
        for host, port in o.udp:
            try:
                udp.append(UdpLink(None, host, port))
            except OSError as e:
                raise _bind_error(f"UDP {host}:{port}", e) from None
        for sport, baud in o.serial:
            try:
                serial.append(SerialLink(None, sport, baud, poll=o.poll,
                                         reply_timeout=o.reply_timeout,
                                         poll_interval=o.poll_interval))  # fmt: skip
            except (OSError, ValueError) as e:  # serial.SerialException is an OSError
                why = os.strerror(e.errno) if isinstance(e, OSError) and e.errno else str(e)
                raise StartError(f"cannot open serial port {sport}: {why}") from None
    except StartError:
        for link in udp + serial:
            with contextlib.suppress(Exception):
                link.close()
        raise
    return udp, serial


async def serve(o: Options) -> dict[str, int]:
    loop = asyncio.get_running_loop()
    name = o.name or f"{socket.gethostname()}-{os.getpid()}"
    udp, serial = _listeners(o)
    store: Store | None = None
    try:
        store = open_store(o.db, name)
        mqtt = None
        publish = None
        if o.mqtt:
            from tools.gateway.transports import MqttLink

            # The link exists before the gateway (which publishes through it); start() after.
            mqtt = MqttLink(None, o.mqtt[0], o.mqtt[1], client_id=name, prefix=o.prefix,
                            share=o.share, ingest=o.mqtt_ingest, username=o.mqtt_user,
                            password=o.mqtt_password)  # fmt: skip
            publish = mqtt.publish
        try:
            gw = Gateway(o.devices, store, name=name, publish=publish, topic_prefix=o.prefix,
                         republish_telemetry=o.republish_telemetry, batch=o.batch,
                         cmd_retry=o.command_retry, cmd_retry_max=o.command_retry_max,
                         cmd_tries=o.command_tries, raw_json=o.raw_json)  # fmt: skip
        except db_errors() as e:  # a locked or damaged database, a lost server
            raise StartError(f"--db {mask(o.db)}: cannot use the database ({e})") from None
    except BaseException:
        for link in udp + serial:
            with contextlib.suppress(Exception):
                link.close()
        if store is not None:
            store.close()
        raise
    assert store is not None
    links: list[Any] = []
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, stop.set)
    try:
        if mqtt is not None:
            mqtt.gw = gw
            gw.default_link = mqtt
            mqtt.start(loop)
            links.append(mqtt)
        for u in udp:
            u.gw = gw
            u.start(loop)
            links.append(u)
            log.info("udp listening on %s:%d", *u.address)
        for s in serial:
            s.gw = gw
            s.flush_request = gw.flush
            s.start(loop)
            links.append(s)
            log.info(
                "serial %s at %d baud%s",
                s.port,
                s.ser.baudrate,
                f", polling {len(o.poll)} devices" if o.poll else "",
            )
        if mqtt is not None:
            t_end = time.monotonic() + 10
            while not mqtt.subscribed.is_set() and time.monotonic() < t_end:
                await asyncio.sleep(0.02)
            if not mqtt.subscribed.is_set():
                log.warning("mqtt not subscribed yet (broker down?); carrying on, will retry")
        if o.ready_file:
            Path(o.ready_file).write_text(
                json.dumps(
                    {
                        "pid": os.getpid(),
                        "name": name,
                        "udp": [list(u.address) for u in links if getattr(u, "name", "") == "udp"],
                    }
                )
            )
        log.info("gateway %s running with %d registered devices", name, len(o.devices))
        t_end_run = None if o.duration is None else time.monotonic() + o.duration
        next_stats = time.monotonic() + o.stats_every
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), o.flush_interval)
            # Both guard themselves (they never raise); this guard is the last line, so that
            # no input, and no bug it meets, ends the service.
            try:
                gw.tick()
                gw.flush()
            except Exception:
                gw.internal_error("service loop")
            now = time.monotonic()
            if now >= next_stats:
                next_stats = now + o.stats_every
                log.info("stats %s", json.dumps(gw.stats, sort_keys=True))
            if t_end_run is not None and now >= t_end_run:
                break
    finally:
        gw.close()
        for link in links:
            with contextlib.suppress(Exception):
                link.close()
        store.close()
        log.info("gateway %s stopped: %s", name, json.dumps(gw.stats, sort_keys=True))
    return gw.stats
