# Pin map and hardware assumptions of the reference board: the ONE place they live.
# docs/hardware.md has the same table for the person with the soldering iron; keep them equal.
#
# Board: ESP32-WROOM-32 DevKit (4 MB flash, LittleFS root). Only ADC1 pins are used for
# analog inputs: ADC2 is unusable while WiFi runs (ESP-IDF ADC docs). A WROOM module brings
# out six ADC1 pins (GPIO 32-36, 39); that is why the four NTCs share one pin through a
# 74HC4051 analog multiplexer (temperatures change slowly, one settle + read each is enough).
from efd.compat import const

# -- analog front end ----------------------------------------------------------------------
PIN_RESIDUAL = const(36)  # ADC1_CH0 (SENSOR_VP): residual-current CT
PIN_PHASES = (39, 34, 35)  # ADC1_CH3, CH6, CH7: line-current CTs L1, L2, L3
PIN_TEMP = const(32)  # ADC1_CH4: 74HC4051 common output (NTC dividers on mux inputs 0-3)
PIN_MUX = (25, 26)  # 74HC4051 S0, S1 (S2 and /E tied to GND)
MUX_SETTLE_US = const(20)  # 74HC4051 Ron*C settles in << 1 us; 20 us covers the ADC S/H
TEMP_OVERSAMPLE = const(8)  # ESP32 ADC noise is several counts: average 8 reads per NTC
# ADC attenuation 11 dB: ~0.15-2.45 V is the linear range (Espressif ADC calibration notes).
# The CT bias sits at VCC/2 through two 10 k resistors (1.65 V = code ~2048 on an ideal
# converter); the band efd.config ct_bias_lo/hi checks this bias for lead faults.
ADC_ATTEN_DB = const(11)
# Residual CT: 1000:1 (e.g. ZCT-style 1 A:1 mA), burden 800 ohm -> 0.8 V peak per 1 A... see
# docs/hardware.md for the arithmetic: res_gain_q12 4096 = 1 mA per count at 11 dB.
# Burst sampling: 40 samples per mains cycle (efd.rms), 4 CT channels read per sample instant.
SAMPLE_PERIOD_US_50HZ = const(500)  # 2000 Hz
SAMPLE_PERIOD_US_60HZ = const(417)  # 2400 Hz (416.7 us; 0.08 % off, well inside RMS error)

# -- arc-fault front end -------------------------------------------------------------------
PIN_ARC = const(27)  # pulse per arcing half-cycle from the external arc detector (falling edge)

# -- self-test -----------------------------------------------------------------------------
# The self-test puts 1.5 x the *current* set value through the residual CT (Bender RCM420 style,
# IEC 62020 test device), for any set value from 20 to 1000 mA. A winding through the CT is
# driven by an op-amp transconductance stage from this pin's PWM (LEDC, 40 kHz), low-passed by a
# 2-pole RC (fc ~2 kHz) and AC-coupled: duty 50 % is no current, the firmware sweeps the duty
# as a sine in step with its sample instants (40 per cycle), so the test current is a mains-
# frequency sine whose RMS it sets. Full modulation (duty 0-100 %) is TEST_FS_MA RMS in the
# CT's primary: 2000 mA covers 1.5 x 1000 mA with margin. At 40 kHz LEDC has 10-bit duty
# steps: 3.9 mA of test current, 13 % of the smallest test (30 mA for a 20 mA set value).
PIN_TEST = const(13)
TEST_PWM_HZ = const(40000)
TEST_FS_MA = const(2000)

# -- indicators and outputs (GB 14287.1: red alarm, yellow fault, green normal) ------------
PIN_LED_RED = const(21)
PIN_LED_YELLOW = const(22)
PIN_LED_GREEN = const(23)
PIN_BUZZER = const(18)  # active buzzer module >= 70 dB(A) at 1 m, via NPN transistor
PIN_RELAY = const(19)  # alarm relay coil via NPN + flyback diode (alarm, never trip by default)
PIN_BUTTON = const(14)  # test/reset button to GND, internal pull-up
BUTTON_LONG_MS = const(3000)  # held >= 3 s: self-test; shorter: reset
BUTTON_DEBOUNCE_MS = const(50)

# -- RS-485 link (MAX3485, half duplex) ------------------------------------------------------
UART_ID = const(2)
PIN_TX = const(17)
PIN_RX = const(16)
PIN_DE = const(4)  # driver enable (DE and /RE tied): high while we transmit
BAUD = const(9600)  # protocol/SPEC.md §9 budget is computed at 9600 baud
LINK_POLLED = True  # RS-485 multidrop: answer only when polled (SPEC.md §9)

# -- watchdog ----------------------------------------------------------------------------------
# One loop iteration is a 100 ms burst + processing; 8 s tolerates a slow flash write (LittleFS
# block erase is tens of ms) but still catches a hang well inside GB 14287's 30 s alarm time.
WDT_MS = const(8000)
