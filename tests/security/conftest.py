"""The gateway suite's fixtures (a private Mosquitto with users and ACLs, subprocesses that
always stop, a fleet registry) for the MQTT access-control tests."""

from tests.gateway.conftest import broker, fleet_files, procs  # noqa: F401
