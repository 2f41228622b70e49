# The detector application: wires the detection core (efd), the wire protocol (protocol) and a
# HAL (hal_esp32 on the board, hal_sim on the unix port). See docs/firmware.md.
VERSION = (0, 1, 0)
