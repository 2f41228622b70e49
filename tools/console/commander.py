"""The console's MQTT link: command requests to the gateway and escalations for platforms.

Commands take the gateway's existing authenticated path (docs/gateway.md, "Commands"): a JSON
request on `<prefix>/cmd/<user>/<device>` (the broker's ACL lets the console's MQTT user
publish only under its own name, which the gateway stores as `requested_by`); the gateway
answers on `<prefix>/json/<device>/command` with the request id, which the case records, so
`commands` (status, RESULT) is linked to the case. The gateway signs and retransmits the
COMMAND; the console never holds a device key.

Escalated cases are published on `<prefix>/case/<device>` (QoS 1, not retained). The console's
MQTT user needs: `topic write efd/cmd/<user>/+`, `topic write efd/case/+`,
`topic read efd/json/+/command`.
"""

from __future__ import annotations

import json
import logging
import threading
from typing import Any, Protocol

log = logging.getLogger("tools.console")


class CommandError(Exception):
    """The request could not be made (no broker, no answer): shown to the operator."""


class Commander(Protocol):
    def request(self, device: int, fields: dict[str, Any]) -> dict[str, Any]: ...

    def publish(self, topic: str, payload: bytes) -> None: ...


class NoCommander:
    """Console started without --mqtt: commands are refused with the reason."""

    def request(self, device: int, fields: dict[str, Any]) -> dict[str, Any]:
        raise CommandError("the console was started without --mqtt: no path to the gateway")

    def publish(self, topic: str, payload: bytes) -> None:
        return None


class MqttCommander:
    def __init__(
        self,
        host: str,
        port: int,
        user: str | None,
        password: str | None,
        prefix: str = "efd",
        timeout: float = 5.0,
    ):
        import paho.mqtt.client as mqtt

        self.prefix = prefix
        self.user = user or "anonymous"
        self.timeout = timeout
        self._lock = threading.Lock()
        self._waiting: dict[int, list[dict[str, Any]]] = {}
        self._cond = threading.Condition()
        self._ready = threading.Event()
        self._refused: list[str] = []
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        if user is not None:
            c.username_pw_set(user, password)
        c.on_connect = self._on_connect
        c.on_message = self._on_message
        c.on_subscribe = lambda *a: self._ready.set()
        try:
            c.connect(host, port, keepalive=30)
        except OSError as e:
            raise CommandError(f"cannot reach MQTT broker {host}:{port}: {e}") from None
        c.loop_start()
        self.client = c
        if not self._ready.wait(timeout):
            self.close()
            raise CommandError(f"MQTT broker {host}:{port} did not confirm the subscription")
        if self._refused:
            self.close()
            raise CommandError(f"MQTT broker refused the connection: {self._refused[0]}")

    def _on_connect(self, c, u, flags, reason, props) -> None:
        if reason.is_failure:
            self._refused.append(str(reason))
            self._ready.set()
            return
        c.subscribe(f"{self.prefix}/json/+/command", 1)

    def _on_message(self, c, u, msg) -> None:
        try:
            device = int(msg.topic.split("/")[-2])
            reply = json.loads(msg.payload)
        except (ValueError, IndexError):
            return
        with self._cond:
            if device in self._waiting:
                self._waiting[device].append(reply if isinstance(reply, dict) else {})
                self._cond.notify_all()

    def request(self, device: int, fields: dict[str, Any]) -> dict[str, Any]:
        """Publish a command request, return the gateway's answer ({"ok", "request", ...})."""
        with self._lock:  # one request in flight: answers carry no correlation id
            with self._cond:
                self._waiting[device] = []
            try:
                self.client.publish(
                    f"{self.prefix}/cmd/{self.user}/{device}", json.dumps(fields).encode(), qos=1
                )
                with self._cond:
                    if not self._cond.wait_for(lambda: self._waiting[device], self.timeout):
                        raise CommandError(f"no gateway answered within {self.timeout:g} s")
                    return self._waiting[device][0]
            finally:
                with self._cond:
                    self._waiting.pop(device, None)

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
