"""Gateway for integrators: ingest detector frames from serial, UDP and MQTT, store them in
SQLite, republish decoded JSON over MQTT. docs/gateway.md describes it."""
