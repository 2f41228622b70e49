"""Fleet simulator: N virtual detectors at telemetry level. Their frames come from the real
codec (protocol/), their alarms from scenarios run through the real detector (host_sim)."""
