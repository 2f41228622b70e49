"""Issue 10, finding 6: MQTT command requests must come from an authenticated operator.

The broker scripts/broker.sh configures refuses anonymous clients and confines each user by ACL:
a detector (user name = device id) publishes only its own uplink, only an operator publishes
command requests, and only under its own user name (`<prefix>/cmd/<user>/<device>`), which the
gateway stores with the command. Each test fails against the old, anonymous, ACL-less broker."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest

from tests.gateway.conftest import run_cli, start_gateway

pytest.importorskip("paho.mqtt.client")
import paho.mqtt.client as mqtt

PREFIX = "tsec"


class Client:
    """A paho MQTT 5 client that records the outcome of its connection and what it receives."""

    def __init__(self, broker, user: str | None, subscribe: str | None = None):
        self.refused: str | None = None
        self.connected = threading.Event()
        self.ready = threading.Event()
        self.got: list[tuple[str, bytes]] = []
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        if user is not None:
            c.username_pw_set(user, broker.password(user))

        def on_connect(c, u, flags, reason, props):
            if reason.is_failure:
                self.refused = str(reason)
                self.ready.set()
                return
            self.connected.set()
            if subscribe:
                c.subscribe(subscribe, 1)
            else:
                self.ready.set()

        c.on_connect = on_connect
        c.on_subscribe = lambda *a: self.ready.set()
        c.on_message = lambda c, u, m: self.got.append((m.topic, m.payload))
        c.connect("127.0.0.1", broker.port, keepalive=10)
        c.loop_start()
        self.c = c
        assert self.ready.wait(10), "no CONNACK/SUBACK from the broker"

    def publish(self, topic: str, payload: bytes) -> None:
        info = self.c.publish(topic, payload, qos=1)
        info.wait_for_publish(5)  # PUBACK: the broker has handled (or refused) it

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def test_anonymous_client_cannot_connect(broker):
    cl = Client(broker, None)
    try:
        assert not cl.connected.is_set()
        assert cl.refused is not None and "authori" in cl.refused.lower(), cl.refused
    finally:
        cl.close()


def test_detector_cannot_request_commands_or_publish_another_uplink(broker):
    # The gateway's account may read uplinks and command requests: it sees what got through.
    watch = Client(broker, "gateway", subscribe=f"{PREFIX}/#")
    det = Client(broker, "100001")
    try:
        assert det.connected.is_set(), det.refused
        det.publish(f"{PREFIX}/up/100001", b"own uplink")  # allowed: the control
        det.publish(f"{PREFIX}/up/100002", b"spoofed uplink")
        det.publish(f"{PREFIX}/cmd/100001/100002", b'{"cmd": "reboot"}')
        det.publish(f"{PREFIX}/cmd/operator/100002", b'{"cmd": "reboot"}')
        time.sleep(0.5)
    finally:
        det.close()
        watch.close()
    assert watch.got == [(f"{PREFIX}/up/100001", b"own uplink")]


def test_operator_request_is_recorded_with_its_user(tmp_path, fleet_files, procs, broker):
    db = tmp_path / "gw.db"
    fast = ["--command-retry", "0.1", "--command-retry-max", "0.2", "--command-tries", "1"]
    start_gateway(procs, tmp_path, fleet_files, "gwsec", db, "--mqtt", broker.addr,
                  "--prefix", PREFIX, *broker.auth("gateway"), *fast)  # fmt: skip
    # Another account may not request a command under the operator's name (nor its own).
    spoof = Client(broker, "100003")
    try:
        spoof.publish(f"{PREFIX}/cmd/operator/100005", b'{"cmd": "reboot"}')
        spoof.publish(f"{PREFIX}/cmd/100003/100005", b'{"cmd": "reboot"}')
    finally:
        spoof.close()
    r = run_cli("tools.gateway", "command", "--mqtt", broker.addr, "--prefix", PREFIX,
                *broker.auth("operator"), "--device", "100005", "selftest")  # fmt: skip
    assert r.returncode == 0, r.stdout + r.stderr
    assert broker.password("operator") not in r.stdout + r.stderr
    rows: list = []
    t_end = time.monotonic() + 10
    while time.monotonic() < t_end:
        time.sleep(0.2)
        con = sqlite3.connect(db, timeout=30)
        try:
            rows = con.execute("SELECT cmd, requested_by FROM commands").fetchall()
        finally:
            con.close()
        if rows:
            break
    time.sleep(0.5)  # a spoofed request accepted would show up by now
    con = sqlite3.connect(db, timeout=30)
    try:
        rows = con.execute("SELECT cmd, requested_by FROM commands ORDER BY requested").fetchall()
    finally:
        con.close()
    assert rows == [("selftest", "operator")]
    q = run_cli("tools.gateway", "query", "commands", "--db", str(db), "--csv")
    assert q.returncode == 0 and "requested_by" in q.stdout and "operator" in q.stdout, q.stderr
    assert broker.password("gateway") not in (tmp_path / "gwsec.log").read_text()
