"""The board twin: the ESP32 port's `machine`, `esp32` and `time` for the unix port (board/)."""
