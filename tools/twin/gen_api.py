"""Generate the ESP32 port's API table (tools/twin/esp32_api.json) from MicroPython's C source.

The board twin (tools/twin/board/) runs the unmodified ESP32 HAL on the unix port, so its
`machine`, `esp32` and `time` must accept exactly the names, positional counts and keywords the
real port accepts, and refuse the rest the way the port does. The truth for that is the port's C
source, not stubs: this script reads it and writes what it finds as data.

    python -m tools.twin.gen_api --mpy-src DIR_OR_GITDIR [--out tools/twin/esp32_api.json]

--mpy-src is a MicroPython work tree or a bare git dir (then HEAD is read with `git archive`).

How: a small C preprocessor evaluates the #if guards for the generic ESP32 board
(ports/esp32/boards/ESP32_GENERIC, its sdkconfig files, and the ESP-IDF facts in TARGET_H below),
following the port's *_INCLUDEFILE pattern (extmod/machine_uart.c includes
ports/esp32/machine_uart.c). The bindings are then read from the preprocessed text: module and
locals dicts (mp_rom_map_elem_t tables), MP_DEFINE_CONST_FUN_OBJ_* (positional counts),
mp_arg_t allowed_args[] tables (keywords), make_new functions (constructors), and the frozen
ports/esp32/modules/machine.py (machine.Counter/Encoder are Python classes over esp32.PCNT).
The output lists only what the generic ESP32 build compiles in; each entry names its source
file and line, the #if condition it sits under (if any), and what each locals table leaves out
on this board ("absent").

Names are looked up as C's scope and linkage rules see them: an allowed_args table is the one
declared in the parsing function's body (static, const or neither), else a file-scope one of
the same unit (the .c file plus the INCLUDEFILE it includes), else a non-static table the unit
declares `extern`; a function or object of another unit only if it is not `static`. Nothing is
borrowed from another unit by name: with no table found, the entry's keywords are "unknown"
(the checker accepts any) and a note says why.
"""

from __future__ import annotations

import argparse
import ast
import bisect
import io
import json
import re
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OUT_DEFAULT = Path(__file__).with_name("esp32_api.json")
BOARD_DIR = "ports/esp32/boards/ESP32_GENERIC"
INCLUDE_DIRS = ["", "ports/esp32", BOARD_DIR]  # "" is the MicroPython root
ARCHIVE_PATHS = ["py", "extmod", "shared", "drivers", "ports/esp32"]
MODULES = ("machine", "esp32", "time")
FROZEN_MACHINE = "ports/esp32/modules/machine.py"
# Binding files outside ports/esp32 and extmod/machine_* that the three modules point into.
EXTRA_ROOTS = [
    "extmod/modmachine.c",
    "extmod/modtime.c",
    "py/stream.c",  # UART.read/write/readinto/readline/flush are the generic stream methods
    "py/modsys.c",  # machine.soft_reset is sys.exit
    "shared/runtime/mpirq.c",  # mp_irq_init_args: UART.irq(handler, trigger, hard)
    "drivers/dht/dht.c",  # machine.dht_readinto
]

# ESP-IDF facts for the ESP32 target that the port's #if guards and constants refer to. These
# headers are not in the MicroPython tree; the values are copied as facts (not code) from
# ESP-IDF v5.5 (ports/esp32/README.md: v5.5.2 is the recommended version). Booleans that the
# IDF leaves undefined on the ESP32 stay undefined here (C's #if treats them as 0).
TARGET_H = """
// The compiler (xtensa-esp32-elf-gcc): a little-endian 32-bit target.
#define __GNUC__ 14
#define __xtensa__ 1
#define __XTENSA__ 1
#define __ORDER_LITTLE_ENDIAN__ 1234
#define __ORDER_BIG_ENDIAN__ 4321
#define __BYTE_ORDER__ __ORDER_LITTLE_ENDIAN__
#define __SIZEOF_INT__ 4
#define __SIZEOF_LONG__ 4
#define __SIZEOF_POINTER__ 4
#define __CHAR_BIT__ 8
#define UINTPTR_MAX 0xffffffffU
#define INTPTR_MAX 0x7fffffff
#define SIZE_MAX 0xffffffffU
#define INT_MAX 0x7fffffff
#define UINT_MAX 0xffffffffU
#define LONG_MAX 0x7fffffffL
#define ULONG_MAX 0xffffffffUL
// ports/esp32/boards/mpconfigboard_esp32_common.cmake: set(IDF_TARGET esp32)
#define CONFIG_IDF_TARGET_ESP32 1
#define CONFIG_IDF_TARGET_ARCH_XTENSA 1
// components/esp_common/include/esp_idf_version.h, v5.5.2
#define ESP_IDF_VERSION_MAJOR 5
#define ESP_IDF_VERSION_MINOR 5
#define ESP_IDF_VERSION_PATCH 2
#define ESP_IDF_VERSION_VAL(major, minor, patch) (((major) << 16) | ((minor) << 8) | (patch))
#define ESP_IDF_VERSION \\
    ESP_IDF_VERSION_VAL(ESP_IDF_VERSION_MAJOR, ESP_IDF_VERSION_MINOR, ESP_IDF_VERSION_PATCH)
// components/soc/esp32/include/soc/soc_caps.h
#define SOC_ADC_SUPPORTED 1
#define SOC_DAC_SUPPORTED 1
#define SOC_UART_SUPPORTED 1
#define SOC_PCNT_SUPPORTED 1
#define SOC_EMAC_SUPPORTED 1
#define SOC_ULP_SUPPORTED 1
#define SOC_RTC_MEM_SUPPORTED 1
#define SOC_I2S_SUPPORTED 1
#define SOC_RMT_SUPPORTED 1
#define SOC_LEDC_SUPPORTED 1
#define SOC_I2C_SUPPORTED 1
#define SOC_TOUCH_SENSOR_SUPPORTED 1
#define SOC_ULP_FSM_SUPPORTED 1
#define SOC_LIGHT_SLEEP_SUPPORTED 1
#define SOC_DEEP_SLEEP_SUPPORTED 1
#define SOC_PM_SUPPORTED 1
#define SOC_SDMMC_HOST_SUPPORTED 1
#define SOC_BT_SUPPORTED 1
#define SOC_WIFI_SUPPORTED 1
#define SOC_ADC_PERIPH_NUM (2)
#define SOC_ADC_ATTEN_NUM (4)
#define SOC_ADC_RTC_MIN_BITWIDTH (9)
#define SOC_ADC_RTC_MAX_BITWIDTH (12)
#define SOC_CPU_CORES_NUM 2
#define SOC_DAC_CHAN_NUM 2
#define SOC_GPIO_PIN_COUNT 40
#define SOC_GPIO_SUPPORT_HOLD_IO_IN_DSLP (1)
#define SOC_I2C_NUM (2U)
#define SOC_I2C_SUPPORT_SLAVE (1)
#define SOC_I2S_NUM (2U)
#define SOC_I2S_SUPPORTS_APLL (1)
#define SOC_I2S_HW_VERSION_1 (1)
#define SOC_LEDC_SUPPORT_APB_CLOCK (1)
#define SOC_LEDC_SUPPORT_REF_TICK (1)
#define SOC_LEDC_SUPPORT_HS_MODE (1)
#define SOC_LEDC_CHANNEL_NUM (8)
#define SOC_LEDC_TIMER_BIT_WIDTH (20)
#define SOC_PCNT_UNITS_PER_GROUP (8)
#define SOC_PCNT_CHANNELS_PER_UNIT (2)
#define SOC_RMT_CHANNELS_PER_GROUP 8
#define SOC_RMT_SUPPORT_REF_TICK 1
#define SOC_RMT_SUPPORT_APB 1
#define SOC_RTCIO_PIN_COUNT 18
#define SOC_RTCIO_INPUT_OUTPUT_SUPPORTED 1
#define SOC_RTCIO_HOLD_SUPPORTED 1
#define SOC_RTCIO_WAKE_SUPPORTED 1
#define SOC_SPI_PERIPH_NUM 3
#define SOC_TIMER_GROUPS (2)
#define SOC_TIMER_GROUP_TIMERS_PER_GROUP (2)
#define SOC_TIMER_GROUP_TOTAL_TIMERS (4)
#define SOC_TOUCH_SENSOR_VERSION (1U)
#define SOC_TOUCH_SENSOR_NUM (10)
#define SOC_UART_NUM (3)
#define SOC_UART_HP_NUM (3)
#define SOC_UART_SUPPORT_APB_CLK (1)
#define SOC_UART_SUPPORT_REF_TICK (1)
#define SOC_UART_FIFO_LEN (128)
#define SOC_PM_SUPPORT_EXT0_WAKEUP (1)
#define SOC_PM_SUPPORT_EXT1_WAKEUP (1)
#define SOC_PM_SUPPORT_EXT_WAKEUP (1)
#define SOC_PM_SUPPORT_TOUCH_SENSOR_WAKEUP (1)
#define SOC_SDMMC_NUM_SLOTS 2
// components/esp_hw_support/include/esp_sleep.h: esp_sleep_source_t
#define ESP_SLEEP_WAKEUP_UNDEFINED 0
#define ESP_SLEEP_WAKEUP_ALL 1
#define ESP_SLEEP_WAKEUP_EXT0 2
#define ESP_SLEEP_WAKEUP_EXT1 3
#define ESP_SLEEP_WAKEUP_TIMER 4
#define ESP_SLEEP_WAKEUP_TOUCHPAD 5
#define ESP_SLEEP_WAKEUP_ULP 6
#define ESP_SLEEP_WAKEUP_GPIO 7
#define ESP_SLEEP_WAKEUP_UART 8
// components/hal/include/hal/gpio_types.h: gpio_mode_t, gpio_int_type_t, gpio_drive_cap_t
#define GPIO_MODE_DEF_INPUT (1UL << 0)
#define GPIO_MODE_DEF_OUTPUT (1UL << 1)
#define GPIO_MODE_DEF_OD (1UL << 2)
#define GPIO_MODE_INPUT GPIO_MODE_DEF_INPUT
#define GPIO_MODE_OUTPUT GPIO_MODE_DEF_OUTPUT
#define GPIO_MODE_OUTPUT_OD ((GPIO_MODE_DEF_OUTPUT) | (GPIO_MODE_DEF_OD))
#define GPIO_MODE_INPUT_OUTPUT_OD \\
    ((GPIO_MODE_DEF_INPUT) | (GPIO_MODE_DEF_OUTPUT) | (GPIO_MODE_DEF_OD))
#define GPIO_MODE_INPUT_OUTPUT ((GPIO_MODE_DEF_INPUT) | (GPIO_MODE_DEF_OUTPUT))
#define GPIO_INTR_DISABLE 0
#define GPIO_INTR_POSEDGE 1
#define GPIO_INTR_NEGEDGE 2
#define GPIO_INTR_ANYEDGE 3
#define GPIO_INTR_LOW_LEVEL 4
#define GPIO_INTR_HIGH_LEVEL 5
#define GPIO_DRIVE_CAP_0 0
#define GPIO_DRIVE_CAP_1 1
#define GPIO_DRIVE_CAP_2 2
#define GPIO_DRIVE_CAP_3 3
// components/hal/include/hal/adc_types.h: adc_atten_t, adc_bitwidth_t
#define ADC_ATTEN_DB_0 0
#define ADC_ATTEN_DB_2_5 1
#define ADC_ATTEN_DB_6 2
#define ADC_ATTEN_DB_12 3
#define ADC_ATTEN_DB_11 ADC_ATTEN_DB_12
#define ADC_BITWIDTH_DEFAULT 0
#define ADC_BITWIDTH_9 9
#define ADC_BITWIDTH_10 10
#define ADC_BITWIDTH_11 11
#define ADC_BITWIDTH_12 12
#define ADC_BITWIDTH_13 13
// components/hal/include/hal/uart_types.h: uart_signal_inv_t, uart_hw_flowcontrol_t;
// components/esp_driver_uart/include/driver/uart.h: uart_event_type_t
#define UART_SIGNAL_IRDA_TX_INV (0x1 << 0)
#define UART_SIGNAL_IRDA_RX_INV (0x1 << 1)
#define UART_SIGNAL_RXD_INV (0x1 << 2)
#define UART_SIGNAL_CTS_INV (0x1 << 3)
#define UART_SIGNAL_DSR_INV (0x1 << 4)
#define UART_SIGNAL_TXD_INV (0x1 << 5)
#define UART_SIGNAL_RTS_INV (0x1 << 6)
#define UART_SIGNAL_DTR_INV (0x1 << 7)
#define UART_HW_FLOWCTRL_DISABLE 0
#define UART_HW_FLOWCTRL_RTS 1
#define UART_HW_FLOWCTRL_CTS 2
#define UART_HW_FLOWCTRL_CTS_RTS 3
#define UART_DATA 0
#define UART_BREAK 1
// components/driver/deprecated/driver/pcnt_types_legacy.h (esp32.PCNT uses the legacy driver)
#define PCNT_COUNT_DIS 0
#define PCNT_COUNT_INC 1
#define PCNT_COUNT_DEC 2
#define PCNT_MODE_KEEP 0
#define PCNT_MODE_REVERSE 1
#define PCNT_MODE_DISABLE 2
#define PCNT_EVT_THRES_1 (1 << 2)
#define PCNT_EVT_THRES_0 (1 << 3)
#define PCNT_EVT_L_LIM (1 << 4)
#define PCNT_EVT_H_LIM (1 << 5)
#define PCNT_EVT_ZERO (1 << 6)
// components/esp_partition/include/esp_partition.h: esp_partition_type_t
#define ESP_PARTITION_TYPE_APP 0x00
#define ESP_PARTITION_TYPE_DATA 0x01
// components/heap/include/esp_heap_caps.h
#define MALLOC_CAP_EXEC (1 << 0)
#define MALLOC_CAP_32BIT (1 << 1)
#define MALLOC_CAP_8BIT (1 << 2)
"""


class GenError(Exception):
    """A problem with the input (wrong --mpy-src, missing file): reported without a traceback."""


# -- source access ----------------------------------------------------------------------------


class Source:
    """Files of one MicroPython tree, from a work tree or from a bare git dir's HEAD."""

    def __init__(self, path: Path):
        self.files: dict[str, str] = {}
        self.root: Path | None = None
        self.commit: str | None = None
        self.describe: str | None = None
        if (path / "py" / "mpconfig.h").is_file():
            self.root = path
            top = _git(["-C", str(path), "rev-parse", "--show-toplevel"])
            if top and Path(top).resolve() == path.resolve():  # not some enclosing repo's
                self.commit = _git(["-C", str(path), "rev-parse", "HEAD"])
                self.describe = _git(["-C", str(path), "describe", "--tags", "--abbrev=10"])
        elif _git(["--git-dir", str(path), "rev-parse", "--verify", "HEAD:py/mpconfig.h"]):
            gd = ["--git-dir", str(path)]
            self.commit = _git([*gd, "rev-parse", "HEAD"])
            self.describe = _git([*gd, "describe", "--tags", "--abbrev=10", "HEAD"])
            data = subprocess.run(
                ["git", *gd, "archive", "--format=tar", "HEAD", *ARCHIVE_PATHS],
                capture_output=True,
                check=True,
            ).stdout
            with tarfile.open(fileobj=io.BytesIO(data)) as tar:
                for member in tar.getmembers():
                    f = tar.extractfile(member) if member.isfile() else None
                    if f is not None:
                        self.files[member.name] = f.read().decode("utf-8", "replace")
        else:
            raise GenError(
                f"{path}: not a MicroPython source tree (no py/mpconfig.h) nor a git dir whose "
                "HEAD has one"
            )
        for must in ("ports/esp32/mpconfigport.h", "extmod/modmachine.c", FROZEN_MACHINE):
            if self.read(must) is None:
                raise GenError(f"{path}: {must} is missing; is this a MicroPython checkout?")

    def read(self, rel: str) -> str | None:
        if self.root is None:
            return self.files.get(rel)
        p = self.root / rel
        return p.read_text("utf-8", "replace") if p.is_file() else None

    def listdir(self, rel: str) -> list[str]:
        """Files (not folders) directly in folder `rel`, as sorted paths relative to the root."""
        if self.root is None:
            prefix = rel.rstrip("/") + "/"
            return sorted(
                p for p in self.files if p.startswith(prefix) and "/" not in p[len(prefix) :]
            )
        return sorted(
            str(p.relative_to(self.root)) for p in (self.root / rel).iterdir() if p.is_file()
        )


def _git(args: list[str]) -> str | None:
    p = subprocess.run(["git", *args], capture_output=True, text=True, check=False)
    return p.stdout.strip() if p.returncode == 0 else None


# -- C tokens and expressions -----------------------------------------------------------------

TOKEN_RE = re.compile(
    r"""
    (?P<ws>\s+)
   |(?P<str>"(?:\\.|[^"\\])*")
   |(?P<chr>'(?:\\.|[^'\\])*')
   |(?P<num>\.?\d(?:[eEpP][+-]|[\w.])*)
   |(?P<id>[A-Za-z_]\w*)
   |(?P<punct>\#\#|<<=|>>=|\.\.\.|->|\+\+|--|<<|>>|<=|>=|==|!=|&&|\|\||[-+*/%&|^]=|[-+*/%&|^!~<>=?:;,.()\[\]{}\#])
   |(?P<other>.)
    """,
    re.X | re.S,
)


def tokenize(text: str) -> list[str]:
    return [m.group() for m in TOKEN_RE.finditer(text) if m.lastgroup != "ws"]


def is_ident(tok: str) -> bool:
    return bool(re.fullmatch(r"[A-Za-z_]\w*", tok))


def strip_comments(text: str) -> str:
    """Replace C comments by a space, keeping newlines (so line numbers stay)."""
    out = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c in "\"'":
            j = i + 1
            while j < n and text[j] != c and text[j] != "\n":
                j += 2 if text[j] == "\\" else 1
            out.append(text[i : j + 1])
            i = j + 1
        elif text.startswith("//", i):
            j = text.find("\n", i)
            i = n if j < 0 else j
            out.append(" ")
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j < 0 else j + 2
            out.append(" " + "\n" * text.count("\n", i, j))
            i = j
        else:
            j = i
            while j < n and text[j] not in "\"'/":
                j += 1
            if j == i:  # a lone '/'
                j = i + 1
            out.append(text[i:j])
            i = j
    return "".join(out)


def logical_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, text) per logical line: comments gone, backslash-newlines joined."""
    phys = strip_comments(text).split("\n")
    out = []
    i = 0
    while i < len(phys):
        start, line = i, phys[i]
        while line.endswith("\\") and i + 1 < len(phys):
            i += 1
            line = line[:-1] + " " + phys[i]
        out.append((start + 1, line))
        i += 1
    return out


def c_int(tok: str) -> int | None:
    """The value of a C integer or character literal, or None."""
    if tok.startswith("'"):
        body = tok[1:-1]
        return ord(body.encode().decode("unicode_escape")) if body else 0
    m = re.fullmatch(r"(0[xX][0-9a-fA-F]+|0[0-7]*|[1-9]\d*)[uUlL]*", tok)
    if not m:
        return None
    s = m.group(1)
    if s.lower().startswith("0x"):
        return int(s, 16)
    if s.startswith("0") and len(s) > 1:
        return int(s, 8)
    return int(s)


class Unresolved(Exception):
    """An expression names something without a known value."""


BINARY_PREC = {
    "*": 10, "/": 10, "%": 10, "+": 9, "-": 9, "<<": 8, ">>": 8,
    "<": 7, "<=": 7, ">": 7, ">=": 7, "==": 6, "!=": 6,
    "&": 5, "^": 4, "|": 3, "&&": 2, "||": 1,
}  # fmt: skip
C_TYPE_WORDS = {"int", "unsigned", "signed", "long", "short", "char", "bool", "const", "size_t"}


def _c_div(a: int, b: int) -> int:
    q = abs(a) // abs(b)
    return q if (a >= 0) == (b >= 0) else -q


def _apply(op: str, a: int, b: int) -> int:
    if op in ("/", "%") and b == 0:
        raise Unresolved("division by zero")
    ops = {
        "*": lambda: a * b, "/": lambda: _c_div(a, b), "%": lambda: a - b * _c_div(a, b),
        "+": lambda: a + b, "-": lambda: a - b, "<<": lambda: a << b, ">>": lambda: a >> b,
        "<": lambda: int(a < b), "<=": lambda: int(a <= b), ">": lambda: int(a > b),
        ">=": lambda: int(a >= b), "==": lambda: int(a == b), "!=": lambda: int(a != b),
        "&": lambda: a & b, "^": lambda: a ^ b, "|": lambda: a | b,
        "&&": lambda: int(bool(a) and bool(b)), "||": lambda: int(bool(a) or bool(b)),
    }  # fmt: skip
    return ops[op]()


class ExprParser:
    """Integer C expressions (as in #if, enum values and MP_ROM_INT(...)), already expanded.
    `names` gives values to identifiers; others are 0 (#if semantics) or Unresolved."""

    def __init__(self, toks: list[str], names: dict[str, int], zero_unknown: bool):
        self.t = toks
        self.i = 0
        self.names = names
        self.zero_unknown = zero_unknown
        self.unknown: set[str] = set()

    def parse(self) -> int:
        v = self.ternary()
        if self.i != len(self.t):
            raise Unresolved("junk after expression: " + " ".join(self.t[self.i :]))
        return v

    def peek(self) -> str | None:
        return self.t[self.i] if self.i < len(self.t) else None

    def take(self, want: str | None = None) -> str:
        tok = self.peek()
        if tok is None or (want is not None and tok != want):
            raise Unresolved(f"expected {want or 'a token'}")
        self.i += 1
        return tok

    def ternary(self) -> int:
        c = self.binary(1)
        if self.peek() == "?":
            self.take()
            a = self.ternary()
            self.take(":")
            b = self.ternary()
            return a if c else b
        return c

    def binary(self, min_prec: int) -> int:
        lhs = self.unary()
        while (op := self.peek()) in BINARY_PREC and BINARY_PREC[op] >= min_prec:
            self.take()
            rhs = self.binary(BINARY_PREC[op] + 1)
            lhs = _apply(op, lhs, rhs)
        return lhs

    def unary(self) -> int:
        tok = self.peek()
        if tok in ("!", "~", "-", "+"):
            self.take()
            v = self.unary()
            return {"!": int(not v), "~": ~v, "-": -v, "+": v}[tok]
        if tok == "(" and self._is_cast():
            while self.take() != ")":
                pass
            return self.unary()
        return self.primary()

    def _is_cast(self) -> bool:
        j = self.i + 1
        words = []
        while j < len(self.t) and (is_ident(self.t[j]) or self.t[j] == "*"):
            words.append(self.t[j])
            j += 1
        if not words or j >= len(self.t) or self.t[j] != ")" or j + 1 >= len(self.t):
            return False
        first = words[0]
        is_type = first in C_TYPE_WORDS or first.endswith("_t") or first == "struct"
        return is_type and first not in self.names

    def primary(self) -> int:
        tok = self.take()
        if tok == "(":
            v = self.ternary()
            self.take(")")
            return v
        val = c_int(tok)
        if val is not None:
            return val
        if tok in ("true", "false"):
            return int(tok == "true")
        if is_ident(tok):
            if tok in self.names:
                return self.names[tok]
            if self.zero_unknown and self.peek() != "(":
                self.unknown.add(tok)
                return 0
            raise Unresolved(tok)
        raise Unresolved(tok)


# -- preprocessor ----------------------------------------------------------------------------


# The enclosing #if frames of a line, outermost first: (file of the #if, condition under which
# the current branch is compiled).
Conds = tuple[tuple[str, str], ...]


@dataclass
class Macro:
    name: str
    params: list[str] | None  # None: object-like
    body: list[str]
    file: str
    line: int
    conds: Conds


@dataclass
class Line:
    file: str
    line: int
    text: str
    conds: Conds


@dataclass
class Frame:
    file: str
    outer_active: bool
    active: bool
    taken: bool
    branches: list[str]  # the conditions tested so far in this #if/#elif chain
    text: str  # the condition under which the current branch is compiled


class Preprocessor:
    """Just enough of C's preprocessor to decide #if guards, inline the port's INCLUDEFILEs and
    keep #defines for later expansion. Non-directive lines are kept as text (not expanded)."""

    def __init__(self, src: Source, base: dict[str, Macro] | None = None):
        self.src = src
        self.macros: dict[str, Macro] = dict(base or {})
        self.unknown: set[str] = set()
        self.lines: list[Line] = []  # active non-directive lines
        self.inactive: list[Line] = []  # compiled-out lines of .c files (for "absent")
        self.seen_headers: set[str] = set()
        self.frames: list[Frame] = []

    # -- macro expansion
    def expand(self, toks: list[str], hide: frozenset[str] = frozenset()) -> list[str]:
        out: list[str] = []
        i = 0
        while i < len(toks):
            t = toks[i]
            m = self.macros.get(t) if is_ident(t) and t not in hide else None
            if m is None:
                out.append(t)
                i += 1
            elif m.params is None:
                out.extend(self.expand(m.body, hide | {t}))
                i += 1
            elif i + 1 < len(toks) and toks[i + 1] == "(":
                args, j = split_args(toks, i + 1)
                out.extend(self.expand(self._substitute(m, args, hide), hide | {t}))
                i = j
            else:
                out.append(t)
                i += 1
        return out

    def _substitute(self, m: Macro, args: list[list[str]], hide: frozenset[str]) -> list[str]:
        params = m.params or []
        if params == ["void"] or (len(params) == 1 and not params[0] and args == [[]]):
            params, args = [], []
        amap: dict[str, list[str]] = {}
        for k, p in enumerate(params):
            if p == "...":
                amap["__VA_ARGS__"] = join_args(args[k:])
            else:
                amap[p] = args[k] if k < len(args) else []
        out: list[str] = []
        body = m.body
        i = 0
        while i < len(body):
            t = body[i]
            if t == "#" and i + 1 < len(body) and body[i + 1] in amap:
                out.append('"' + " ".join(amap[body[i + 1]]) + '"')
                i += 2
            elif i + 1 < len(body) and body[i + 1] == "##":
                left = amap.get(t, [t])
                right_tok = body[i + 2] if i + 2 < len(body) else ""
                right = amap.get(right_tok, [right_tok])
                glued = [*left[:-1], (left[-1] if left else "") + (right[0] if right else "")]
                out.extend(glued + right[1:])
                i += 3
            elif t in amap:
                out.extend(self.expand(amap[t], hide))
                i += 1
            else:
                out.append(t)
                i += 1
        return out

    def eval_if(self, expr: str) -> bool:
        toks = tokenize(expr)
        resolved: list[str] = []
        i = 0
        while i < len(toks):  # `defined X` is decided before expansion
            if toks[i] == "defined":
                if toks[i + 1] == "(":
                    name, i = toks[i + 2], i + 4
                else:
                    name, i = toks[i + 1], i + 2
                resolved.append("1" if name in self.macros else "0")
            else:
                resolved.append(toks[i])
                i += 1
        ep = ExprParser(self.expand(resolved), {}, zero_unknown=True)
        try:
            v = ep.parse()
        except Unresolved as e:
            raise GenError(f"cannot evaluate #if {expr!r}: {e}") from e
        self.unknown |= ep.unknown
        return bool(v)

    # -- files
    def active(self) -> bool:
        return not self.frames or self.frames[-1].active

    def conds(self) -> Conds:
        return tuple((f.file, f.text) for f in self.frames)

    def resolve_include(self, name: str, current: str) -> str | None:
        here = str(Path(current).parent)
        for d in [here, *INCLUDE_DIRS]:
            rel = str(Path(d) / name) if d not in ("", ".") else name
            if self.src.read(rel) is not None:
                return rel
        return None

    def run(self, rel: str) -> None:
        text = self.src.read(rel)
        if text is None:
            raise GenError(f"missing source file {rel}")
        depth = len(self.frames)
        for lineno, line in logical_lines(text):
            m = re.match(r"\s*#\s*(\w*)\s*(.*)", line)
            if m:
                self.directive(rel, lineno, m.group(1), m.group(2).strip())
            elif self.active():
                if line.strip():
                    self.lines.append(Line(rel, lineno, line, self.conds()))
            elif rel.endswith(".c") and line.strip():
                self.inactive.append(Line(rel, lineno, line, self.conds()))
        if len(self.frames) != depth:
            raise GenError(f"{rel}: unbalanced #if/#endif")

    def directive(self, rel: str, lineno: int, name: str, rest: str) -> None:
        if name in ("if", "ifdef", "ifndef"):
            outer = self.active()
            if name == "if":
                text = " ".join(rest.split())
                val = outer and self.eval_if(rest)
            else:
                macro = rest.split()[0]
                text = ("" if name == "ifdef" else "!") + f"defined({macro})"
                val = outer and ((macro in self.macros) == (name == "ifdef"))
            self.frames.append(Frame(rel, outer, val, val, [text], text))
            return
        if name in ("elif", "else"):
            f = self.frames[-1]
            prior = " || ".join(f.branches)
            if name == "elif":
                cond = " ".join(rest.split())
                f.text = f"!({prior}) && {cond}"
                f.branches.append(cond)
                f.active = f.outer_active and not f.taken and self.eval_if(rest)  # lazy
            else:
                f.text = f"!({prior})"
                f.active = f.outer_active and not f.taken
            f.taken = f.taken or f.active
            return
        if name == "endif":
            self.frames.pop()
            return
        if not self.active():
            return
        if name == "define":
            m = re.match(r"(\w+)(\(([^)]*)\))?\s*(.*)", rest)
            if m:
                params = None if m.group(2) is None else [p.strip() for p in m.group(3).split(",")]
                self.macros[m.group(1)] = Macro(
                    m.group(1), params, tokenize(m.group(4)), rel, lineno, self.conds()
                )
        elif name == "undef":
            self.macros.pop(rest.split()[0], None)
        elif name == "include":
            toks = tokenize(rest)
            if toks and is_ident(toks[0]):
                toks = self.expand(toks)
            target = "".join(toks)
            if target.startswith('"') or target.startswith("<"):
                found = self.resolve_include(target[1:-1], rel)
                if found and not (found.endswith(".h") and found in self.seen_headers):
                    self.seen_headers.add(found)
                    self.run(found)
        elif name == "error":
            raise GenError(f"{rel}:{lineno}: #error {rest} (the ESP32 configuration is wrong)")


def split_args(toks: list[str], open_idx: int) -> tuple[list[list[str]], int]:
    """Arguments of the call whose '(' is toks[open_idx]; returns (args, index after ')')."""
    args: list[list[str]] = [[]]
    depth = 0
    i = open_idx
    while i < len(toks):
        t = toks[i]
        if t in "([{":
            depth += 1
            if depth > 1:
                args[-1].append(t)
        elif t in ")]}":
            depth -= 1
            if depth == 0:
                return args, i + 1
            args[-1].append(t)
        elif t == "," and depth == 1:
            args.append([])
        else:
            args[-1].append(t)
        i += 1
    raise GenError("unbalanced parentheses in a macro call")


def join_args(args: list[list[str]]) -> list[str]:
    out: list[str] = []
    for k, a in enumerate(args):
        if k:
            out.append(",")
        out.extend(a)
    return out


def read_sdkconfig(src: Source) -> str:
    """The board's sdkconfig files as #defines (the CONFIG_* the port's #ifs test), in the order
    its CMake files name them (a later file wins, as in ESP-IDF's SDKCONFIG_DEFAULTS)."""
    files: list[str] = []

    def scan(cmake: str) -> None:
        text = src.read(cmake) or ""
        for m in re.finditer(
            r"include\(\s*(boards/[\w./-]+\.cmake)\s*\)|(boards/\S*sdkconfig\.\w+)", text
        ):
            if m.group(1):
                scan("ports/esp32/" + m.group(1))
            elif m.group(2) not in files:
                files.append(m.group(2))

    scan(f"{BOARD_DIR}/mpconfigboard.cmake")
    defines: dict[str, str] = {}
    for cfg in files:
        for line in (src.read("ports/esp32/" + cfg) or "").splitlines():
            m = re.match(r"(CONFIG_\w+)=(.*)", line.strip())
            if m and m.group(2) == "n":
                defines.pop(m.group(1), None)
            elif m:
                defines[m.group(1)] = "1" if m.group(2) == "y" else m.group(2)
    return "\n".join(f"#define {k} {v}" for k, v in sorted(defines.items()))


# -- translation units ------------------------------------------------------------------------


@dataclass
class Func:
    name: str
    params: str
    body: str  # from '{' to the matching '}'
    start: int  # offset of the body in the unit's text
    static: bool = False  # internal linkage: visible in its own unit only


@dataclass
class Unit:
    """One preprocessed .c file (with its INCLUDEFILE), flattened to text with line origins."""

    root: str
    pp: Preprocessor
    text: str = ""
    starts: list[int] = field(default_factory=list)
    funcs: dict[str, Func] = field(default_factory=dict)
    spans: list[tuple[int, int]] = field(default_factory=list)  # function bodies, in order

    def __post_init__(self) -> None:
        parts, pos = [], 0
        for ln in self.pp.lines:
            self.starts.append(pos)
            parts.append(ln.text)
            pos += len(ln.text) + 1
        self.text = "\n".join(parts)
        self.funcs, self.spans = find_functions(self.text)

    def in_function(self, pos: int) -> bool:
        """Whether text position `pos` is inside a function body (block scope, not file scope)."""
        k = bisect.bisect_right(self.spans, (pos, len(self.text))) - 1
        return k >= 0 and self.spans[k][0] <= pos < self.spans[k][1]

    def is_static(self, pos: int) -> bool:
        """Whether the declaration starting on the line of `pos` says `static` before `pos`."""
        line_start = self.text.rfind("\n", 0, pos) + 1
        return re.search(r"\bstatic\b", self.text[line_start:pos]) is not None

    def declares_extern(self, name: str, c_type: str) -> bool:
        """Whether the unit (with its headers) declares `extern <c_type> name[...]`."""
        decl = rf"\bextern\s+(?:const\s+)?{re.escape(c_type)}\s+(?:const\s+)?{re.escape(name)}\b"
        return re.search(decl, self.text) is not None

    def origin(self, pos: int) -> Line:
        return self.pp.lines[bisect.bisect_right(self.starts, pos) - 1]

    def where(self, pos: int) -> str:
        ln = self.origin(pos)
        return f"{ln.file}:{ln.line}"


FUNC_RE = re.compile(
    r"^[ \t]*(?:[A-Za-z_][\w]*[\s\*]+)+?([A-Za-z_]\w*)\s*\(([^;{}]*?)\)\s*\{", re.M
)
KEYWORDS = {"if", "for", "while", "switch", "return", "sizeof", "else", "do"}


def matching(text: str, i: int) -> int:
    """Index just past the bracket matching the one at text[i] (strings and chars skipped)."""
    pairs = {"{": "}", "(": ")", "[": "]"}
    stack = []
    n = len(text)
    while i < n:
        c = text[i]
        if c in "\"'":
            j = i + 1
            while j < n and text[j] != c:
                j += 2 if text[j] == "\\" else 1
            i = j + 1
            continue
        if c in pairs:
            stack.append(pairs[c])
        elif c in ")]}":
            if not stack or stack.pop() != c:
                raise GenError("unbalanced brackets")
            if not stack:
                return i + 1
        i += 1
    raise GenError("unbalanced brackets")


def find_functions(text: str) -> tuple[dict[str, Func], list[tuple[int, int]]]:
    """The unit's function definitions by name, and the (start, end) of every body."""
    funcs: dict[str, Func] = {}
    spans: list[tuple[int, int]] = []
    pos = 0
    while m := FUNC_RE.search(text, pos):
        name = m.group(1)
        brace = m.end() - 1
        if name in KEYWORDS or m.group(0).lstrip().startswith(("else", "return", "case")):
            pos = m.end()
            continue
        end = matching(text, brace)
        static = re.search(r"\bstatic\b", text[m.start() : m.start(1)]) is not None
        funcs.setdefault(name, Func(name, m.group(2), text[brace:end], brace, static))
        spans.append((brace, end))
        pos = end
    return funcs, spans


# -- reading the bindings ---------------------------------------------------------------------

FUN_DEF_RE = re.compile(r"\bMP_DEFINE_CONST_FUN_OBJ_(0|1|2|3|VAR|VAR_BETWEEN|KW)\s*\(")
METH_DEF_RE = re.compile(r"\bMP_DEFINE_CONST_(STATIC|CLASS)METHOD_OBJ\s*\(")
TYPE_DEF_RE = re.compile(r"\bMP_DEFINE_CONST_OBJ_TYPE\s*\(")
DICT_DEF_RE = re.compile(r"\bMP_DEFINE_CONST_DICT\s*\(\s*(\w+)\s*,\s*(\w+)\s*\)")
TABLE_RE = re.compile(r"\bmp_rom_map_elem_t\s+(\w+)\s*\[\s*\]\s*=\s*\{")
# An mp_arg_t table however it is declared: `static const`, `const`, or neither (esp32's
# mp_machine_pwm_init_helper has a plain local `mp_arg_t allowed_args[]`, its defaults read self).
ARGS_DECL = r"\bmp_arg_t\s+(?:const\s+)?{name}\s*\[[^\]]*\]\s*=\s*\{{"
ARGS_RE = re.compile(ARGS_DECL.format(name=r"(\w+)"))
MODULE_RE = re.compile(r"\bmp_obj_module_t\s+(\w+)\s*=\s*\{[^;]*?\.globals\s*=[^&;]*&(\w+)")
REGISTER_RE = re.compile(r"\bMP_REGISTER_(?:EXTENSIBLE_)?MODULE\s*\(\s*MP_QSTR_(\w+)\s*,\s*(\w+)")
ENUM_RE = re.compile(r"\benum\b\s*\w*\s*\{([^{}]*)\}")
INSTANCE_RE = re.compile(r"\b\w+\s+(\w+)\s*=\s*\{\s*\{\s*&(\w+)\s*\}")


ARG_KINDS = {"MP_ARG_BOOL": "bool", "MP_ARG_INT": "int", "MP_ARG_OBJ": "obj"}  # py/runtime.h


@dataclass
class Found:
    unit: Unit
    pos: int
    data: Any
    static: bool = False  # internal linkage: only its own unit can refer to it


class Bindings:
    """Everything the units define, by C name (a name defined in several units keeps all)."""

    def __init__(self, units: list[Unit]):
        self.units = units
        self.funobjs: dict[str, list[Found]] = {}
        self.methobjs: dict[str, list[Found]] = {}
        self.types: dict[str, list[Found]] = {}
        self.dicts: dict[str, list[Found]] = {}
        self.tables: dict[str, list[Found]] = {}
        self.argtabs: dict[str, list[Found]] = {}
        self.modules: dict[str, list[Found]] = {}
        self.registered: dict[str, list[Found]] = {}
        self.instances: dict[str, list[Found]] = {}
        for u in units:
            self._scan(u)

    def _add(
        self, index: dict[str, list[Found]], name: str, unit: Unit, pos: int, data: Any
    ) -> None:
        index.setdefault(name, []).append(Found(unit, pos, data, unit.is_static(pos)))

    def _scan(self, u: Unit) -> None:
        t = u.text
        for m in FUN_DEF_RE.finditer(t):
            args = [
                " ".join(a)
                for a in split_args(tokenize(t[m.end() - 1 : matching(t, m.end() - 1)]), 0)[0]
            ]
            self._add(self.funobjs, args[0], u, m.start(), (m.group(1), args))
        for m in METH_DEF_RE.finditer(t):
            # (obj_name, MP_ROM_PTR(&fun_obj)): the wrapped function object
            margs = split_args(tokenize(t[m.end() - 1 : matching(t, m.end() - 1)]), 0)[0]
            target = [x for x in margs[1] if is_ident(x) and not x.startswith("MP_")]
            self._add(self.methobjs, margs[0][0], u, m.start(), (m.group(1).lower(), target[-1]))
        for m in TYPE_DEF_RE.finditer(t):
            toks = u.pp.expand(tokenize(t[m.end() - 1 : matching(t, m.end() - 1)]))
            args = [" ".join(a) for a in split_args(toks, 0)[0]]
            slots = dict(zip(args[3::2], args[4::2], strict=False))
            self._add(self.types, args[0], u, m.start(), (args[0], args[1], slots))
        for m in DICT_DEF_RE.finditer(t):
            self._add(self.dicts, m.group(1), u, m.start(), m.group(2))
        for m in TABLE_RE.finditer(t):
            self._add(
                self.tables, m.group(1), u, m.start(), (m.end() - 1, matching(t, m.end() - 1))
            )
        for m in ARGS_RE.finditer(t):
            if u.in_function(m.start()):
                continue  # a function's own table: arg_table finds it in that function's body
            self._add(
                self.argtabs, m.group(1), u, m.start(), (m.end() - 1, matching(t, m.end() - 1))
            )
        for m in MODULE_RE.finditer(t):
            self._add(self.modules, m.group(1), u, m.start(), m.group(2))
        for m in REGISTER_RE.finditer(t):
            self._add(self.registered, m.group(1), u, m.start(), m.group(2))
        for m in INSTANCE_RE.finditer(t):
            self._add(self.instances, m.group(1), u, m.start(), m.group(2))

    def one(self, index: dict[str, list[Found]], name: str, near: Unit | None) -> Found | None:
        """The definition of `name` as C's linkage sees it from `near`: the one in `near`'s own
        unit, else one with external linkage in another unit (a `static` one is invisible)."""
        found = index.get(name, [])
        for f in found:
            if f.unit is near:
                return f
        return next((f for f in found if not f.static), None)


def enum_values(u: Unit) -> dict[str, int]:
    """Values of the enumerators in the unit's active text (implicit ones counted on from the
    last explicit value; after one that cannot be evaluated, unknown until the next)."""
    vals: dict[str, int] = {}
    for m in ENUM_RE.finditer(u.text):
        nxt: int | None = 0
        for item in m.group(1).split(","):
            name, _, expr = (x.strip() for x in item.partition("="))
            if not name:
                continue
            if expr:
                try:
                    nxt = evaluate(u, expr, vals)
                except Unresolved:
                    nxt = None
            if nxt is not None:
                vals[name] = nxt
                nxt += 1
    return vals


def evaluate(u: Unit, expr: str, enums: dict[str, int]) -> int:
    toks = u.pp.expand(tokenize(expr))
    return ExprParser(toks, enums, zero_unknown=False).parse()


class Extractor:
    def __init__(self, units: list[Unit]):
        self.b = Bindings(units)
        self.enums = {id(u): enum_values(u) for u in units}
        self.notes: list[str] = []

    # -- helpers
    def value(self, u: Unit, expr: str) -> int | None:
        try:
            return evaluate(u, expr, self.enums[id(u)])
        except (Unresolved, RecursionError):
            return None

    def module(self, name: str) -> dict[str, Any]:
        reg = self.b.registered.get(name)
        if not reg:
            raise GenError(f"module {name!r} is not registered by the ESP32 build")
        r = reg[0]
        mod = self.b.one(self.b.modules, r.data, r.unit)
        if mod is None:
            raise GenError(f"module object {r.data} not found")
        members, absent = self.table_for_dict(mod.data, mod.unit, kind="module")
        out: dict[str, Any] = {
            "source": r.unit.where(r.pos),
            "members": members,
        }
        if absent:
            out["absent"] = absent
        return out

    def table_for_dict(
        self, dict_name: str, near: Unit, kind: str
    ) -> tuple[dict[str, Any], dict[str, str]]:
        d = self.b.one(self.b.dicts, dict_name, near)
        if d is None:
            self.notes.append(f"{dict_name}: dict not found in the sources (generated?)")
            return {}, {}
        t = self.b.one(self.b.tables, d.data, d.unit)
        if t is None:
            self.notes.append(f"{d.data}: table not found")
            return {}, {}
        return self.table(t, kind)

    def table(self, t: Found, kind: str) -> tuple[dict[str, Any], dict[str, str]]:
        u = t.unit
        open_pos, end = t.data
        table_conds = u.origin(t.pos).conds
        members: dict[str, Any] = {}
        for key, toks, where, conds in self.table_entries(u, open_pos, end, table_conds):
            entry = self.entry(u, key, toks, kind)
            entry.setdefault("source", where)
            if conds:
                entry["cond"] = " && ".join(conds)
            if key != "__name__":
                members[key] = entry
        return members, self.absent(u, t, table_conds)

    def table_entries(
        self, u: Unit, open_pos: int, end: int, table_conds: Conds
    ) -> Iterator[tuple[str, list[str], str, tuple[str, ...]]]:
        """(name, value tokens, file:line, conditions) per `{ MP_ROM_QSTR(...), v }` entry.
        Top-level macros (MICROPY_PY_MACHINE_EXTRA_GLOBALS, ..._CLASS_CONSTANTS) are expanded;
        their entries are under the #if around the #define (in the defining file), not under the
        `#ifdef MACRO` that guards the macro's use."""
        body = u.text[open_pos + 1 : end - 1]
        # Tokens with positions, so each entry keeps its line; conds None: not from a macro.
        Item = tuple[str, int, tuple[str, ...] | None, str | None]  # (token, pos, conds, where)
        items: list[Item] = []
        for m in TOKEN_RE.finditer(body):
            if m.lastgroup != "ws":
                items.append((m.group(), open_pos + 1 + m.start(), None, None))
        i = 0
        while i < len(items):
            tok, pos, conds, where = items[i]
            if tok == "{":
                depth, j = 0, i
                while True:
                    if items[j][0] == "{":
                        depth += 1
                    elif items[j][0] == "}":
                        depth -= 1
                        if depth == 0:
                            break
                    j += 1
                toks = [x[0] for x in items[i + 1 : j]]
                key_m = re.search(r"MP_QSTR_(\w+)", " ".join(toks[: toks.index(",")]))
                value = toks[toks.index(",") + 1 :]
                if key_m:
                    if conds is None:
                        conds = relative(u.origin(pos).conds, table_conds)
                    yield key_m.group(1), value, where or u.where(pos), conds
                i = j + 1
            elif tok == ",":
                i += 1
            elif tok in u.pp.macros and u.pp.macros[tok].params is None:
                mac = u.pp.macros[tok]
                base = relative(u.origin(pos).conds, table_conds) if conds is None else conds
                own = tuple(text for f, text in mac.conds if f == mac.file)
                new = tuple(c for c in base if c != f"defined({tok})") + own
                items[i : i + 1] = [(x, pos, new, f"{mac.file}:{mac.line}") for x in mac.body]
            else:
                self.notes.append(f"{u.where(pos)}: unexpected token {tok!r} in a table")
                i += 1

    def absent(self, u: Unit, t: Found, table_conds: Conds) -> dict[str, str]:
        """Entries in the table's source lines that this build compiles out, with the reason."""
        first = u.origin(t.pos)
        last = u.origin(t.data[1] - 1)
        if first.file != last.file:
            return {}
        out = {}
        for ln in u.pp.inactive:
            if ln.file == first.file and first.line < ln.line < last.line:
                for name in re.findall(r"MP_ROM_QSTR\(\s*MP_QSTR_(\w+)\s*\)\s*,", ln.text):
                    out[name] = " && ".join(relative(ln.conds, table_conds))
        return out

    def entry(self, u: Unit, key: str, toks: list[str], kind: str) -> dict[str, Any]:
        head = toks[0] if toks else ""
        text = " ".join(toks)
        if head in ("MP_ROM_INT", "MP_OBJ_NEW_SMALL_INT"):
            expr = " ".join(toks[2:-1])
            out: dict[str, Any] = {"kind": "constant", "c": expr}
            val = self.value(u, expr)
            if val is not None:
                out["value"] = val
            return out
        if head == "MP_ROM_QSTR":
            m = re.search(r"MP_QSTR_(\w+)", text)
            return {"kind": "constant", "value": m.group(1) if m else None, "c": text}
        if head in ("MP_ROM_NONE", "MP_ROM_TRUE", "MP_ROM_FALSE"):
            value = {"MP_ROM_NONE": None, "MP_ROM_TRUE": True, "MP_ROM_FALSE": False}[head]
            return {"kind": "constant", "value": value, "c": head}
        refs = [x for x in toks if is_ident(x) and not x.startswith("MP_ROM")]
        if head == "MP_ROM_PTR" and refs:
            return self.ref(u, refs[0], kind)
        return {"kind": "object", "c": text}

    def ref(self, u: Unit, name: str, kind: str) -> dict[str, Any]:
        member_kind = "method" if kind == "class" else "function"
        if f := self.b.one(self.b.funobjs, name, u):
            return self.function(f, member_kind)
        if f := self.b.one(self.b.methobjs, name, u):
            how, target = f.data
            fun = self.b.one(self.b.funobjs, target, f.unit)
            out = self.function(fun, how + "method") if fun else {"kind": how + "method"}
            out["c_obj"] = name
            out["source"] = f.unit.where(f.pos)
            return out
        if f := self.b.one(self.b.types, name, u):
            return self.cls(f)
        if f := self.b.one(self.b.instances, name, u):
            t = self.b.one(self.b.types, f.data, f.unit)
            out = {"kind": "object", "c_obj": name, "source": f.unit.where(f.pos)}
            if t:
                out["type"] = t.data[1].removeprefix("MP_QSTR_")
            return out
        self.notes.append(f"{name}: definition not found in the ESP32 sources")
        return {"kind": "object", "c_obj": name}

    # -- functions
    def function(self, f: Found, kind: str) -> dict[str, Any]:
        how, args = f.data
        u = f.unit
        out: dict[str, Any] = {"kind": kind, "c_obj": args[0], "c_fun": args[-1]}
        out["source"] = u.where(f.pos)
        if how in "0123":
            out["sig"] = {"min": int(how), "max": int(how), "kw": False}
        else:
            lo = self.value(u, args[1])
            hi = self.value(u, args[2]) if how == "VAR_BETWEEN" else None
            out["sig"] = {"min": lo, "max": hi, "kw": how == "KW"}
        if how == "KW":
            out.update(self.kw_parse(u, args[-1]))
        else:
            out["kwargs"] = "none"
        out["signature"] = signature(out, kind)
        return out

    def kw_parse(self, u: Unit, fun: str) -> dict[str, Any]:
        """Follow the keyword map from `fun` to the mp_arg_parse_all that reads it: the allowed
        keywords, and how many positional args the C code takes itself before the table."""
        found = self.find_func(u, fun)
        if found is None:
            return {"kwargs": "unknown"}
        return self._follow(*found, lead=0, optional=False, depth=0)

    def find_func(self, u: Unit, name: str) -> tuple[Unit, Func] | None:
        """The function `name` called from unit `u`: its own, else a non-static one elsewhere."""
        if name in u.funcs:
            return u, u.funcs[name]
        for other in self.b.units:
            if name in other.funcs and not other.funcs[name].static:
                return other, other.funcs[name]
        return None

    def _follow(
        self, u: Unit, fn: Func, lead: int | None, optional: bool, depth: int
    ) -> dict[str, Any]:
        """`lead`: positional args the callers consumed so far (None: not known)."""
        kw_vars = kw_names(fn)
        body = fn.body
        for m in re.finditer(r"\bmp_arg_parse_all(_kw_array)?\s*\(", body):
            args = call_args(body, m.end() - 1)
            # (n_pos, n_kw, all_args, ...) or (n_pos, pos, kws, ...); the table is the 5th.
            if not m.group(1) and args[2].replace(" ", "") not in kw_vars:
                continue
            out = self.positional(fn, args[0], lead, optional)
            out.update(self.arg_table(u, fn, args[4].strip(), m.start()))
            return out
        passed_on: list[str] = []  # calls that get the keywords but are not followed
        for name, args, _pos in calls(body) if depth < 4 else []:
            k = next((i for i, a in enumerate(args) if a.replace(" ", "") in kw_vars), None)
            if k is None or name.startswith("mp_map_init"):
                continue
            found = self.find_func(u, name)
            if found is None or name.startswith("mp_map_"):
                # mp_map_lookup: read by hand; a protocol's function pointer (I2C/SPI.init:
                # `i2c_p->init(self, n_args - 1, args + 1, kw_args)`) or a function the ESP32
                # sources do not define: where the keywords go is not known here.
                passed_on.append(name)
                continue
            # MicroPython's convention: helper(..., n_args, pos_args, kw_args, ...)
            step = self.positional(fn, args[k - 2], lead, optional) if k >= 2 else {}
            return self._follow(
                *found, step.get("leading"), step.get("leading_optional", False), depth + 1
            )
        if passed_on:
            return {
                "kwargs": "unknown",
                "args_note": f"{fn.name} passes its keywords to {', '.join(passed_on)}(...), "
                "not followed (hand-written, or a function pointer): any keyword accepted",
            }
        # Keywords accepted but never read (machine.wake_reason, DAC(pin, **kw)): `n_kw` only
        # in the mp_arg_check_num that allowed them.
        rest = re.sub(r"\bmp_arg_check_num\s*\([^;]*;", "", body)
        if not re.search(r"\bkw_args\s*->\s*used\b|\bn_kw\b", rest):
            return {"kwargs": "ignored"}
        return {"kwargs": "unknown"}

    def positional(self, fn: Func, n_expr: str, lead: int | None, optional: bool) -> dict[str, Any]:
        """How a call passes on the caller's positional count: `n - K` (K more consumed), `n`,
        or a literal 0 (the table gets none; the rest are the C code's own business)."""
        e = n_expr.replace(" ", "")
        m = re.fullmatch(r"(\w+)(?:-(\d+))?", e)
        if e == "0" or lead is None or not m or m.group(1) != n_param(fn):
            return {"extra_positional": "unchecked"}
        k = int(m.group(2) or 0)
        # `--n_args; ++args;` under an `if` (machine.Timer: the id is optional)
        n = re.escape(m.group(1))
        if re.search(rf"--\s*{n}\b|\b{n}\s*--|\b{n}\s*-=\s*1\b", fn.body):
            k += 1
            optional = True
        return {"leading": lead + k, "leading_optional": optional, "extra_positional": "error"}

    def arg_table(self, u: Unit, fn: Func, name: str, call: int) -> dict[str, Any]:
        """The mp_arg_t table `name` that `fn` (in unit `u`) passes to mp_arg_parse_all at
        body offset `call`, by C's scope rules: the last declaration in the function body
        before the call, else a file-scope one of the same unit (an INCLUDEFILE is part of the
        unit), else an `extern` one with external linkage (shared/runtime/mpirq.c's
        mp_irq_init_args). Never another unit's static table: that one is not visible here."""
        where = {"args_fun": fn.name, "args_fun_source": u.where(fn.start)}
        linkage: dict[str, str] = {}
        if not is_ident(name):
            return self.unknown_table(u, fn, name, "not a plain table name", where)
        local = [
            m for m in re.finditer(ARGS_DECL.format(name=re.escape(name)), fn.body)
            if m.start() < call
        ]  # fmt: skip
        if local:
            start = fn.start + local[-1].end() - 1
            t = Found(u, fn.start + local[-1].start(), (start, matching(u.text, start)))
        else:
            found = [f for f in self.b.argtabs.get(name, []) if f.unit is u]
            if not found and u.declares_extern(name, "mp_arg_t"):
                found = [f for f in self.b.argtabs.get(name, []) if not f.static]
                linkage = {"args_linkage": "extern"}
            if not found:
                return self.unknown_table(u, fn, name, "no such table in its unit", where)
            t = found[0]
        tu = t.unit
        open_pos, end = t.data
        body = tu.text[open_pos + 1 : end - 1]
        args = []
        for m in re.finditer(r"\{\s*MP_QSTR_(\w+)\s*,([^{}]*),\s*\{([^{}]*)\}\s*\}", body):
            flags = m.group(2)
            arg: dict[str, Any] = {
                "name": m.group(1),
                "type": next((v for k, v in ARG_KINDS.items() if k in flags), "?"),
                "required": "MP_ARG_REQUIRED" in flags,
                "kw_only": "MP_ARG_KW_ONLY" in flags,
            }
            dm = re.fullmatch(r"\s*\.u_(\w+)\s*=\s*(.*?)\s*", m.group(3))
            if dm and not arg["required"]:
                arg["default_c"] = dm.group(2)
                ok, dv = self.default(tu, dm.group(2))
                if ok:
                    arg["default"] = dv
            args.append(arg)
        return {
            "kwargs": "parsed",
            "args": args,
            "args_source": tu.where(t.pos),
            **where,
            **linkage,
        }

    def unknown_table(
        self, u: Unit, fn: Func, name: str, why: str, where: dict[str, str]
    ) -> dict[str, Any]:
        """No table to read: the keywords are unknown (the checker accepts any), not borrowed."""
        note = (
            f"{u.where(fn.start)}: {fn.name} passes mp_arg_parse_all the table {name!r}: {why}; "
            "keywords not modelled (any accepted)"
        )
        self.notes.append(note)
        return {"kwargs": "unknown", "args_note": note, **where}

    def default(self, u: Unit, c: str) -> tuple[bool, Any]:
        s = c.strip()
        if s in ("mp_const_none", "MP_ROM_NONE"):
            return True, None
        if s in ("mp_const_true", "MP_ROM_TRUE", "true"):
            return True, True
        if s in ("mp_const_false", "MP_ROM_FALSE", "false"):
            return True, False
        if s == "MP_OBJ_NULL":  # "not given": the C code tests for it
            return False, None
        m = re.fullmatch(r"(?:MP_ROM_INT|MP_OBJ_NEW_SMALL_INT)\((.*)\)", s)
        val = self.value(u, m.group(1) if m else s)
        return (val is not None), val

    # -- classes
    def cls(self, t: Found) -> dict[str, Any]:
        c_type, qstr, slots = t.data
        u = t.unit
        out: dict[str, Any] = {"kind": "class", "name": qstr.removeprefix("MP_QSTR_")}
        out["c_type"] = c_type
        out["source"] = u.where(t.pos)
        members: dict[str, Any] = {}
        absent: dict[str, str] = {}
        if "locals_dict" in slots:
            dict_name = slots["locals_dict"].replace("&", "").replace(" ", "")
            if self.b.one(self.b.dicts, dict_name, u) is None:
                # Pin.board: its table is generated at build time (genhdr/pins.h)
                out["members_unknown"] = True
            members, absent = self.table_for_dict(dict_name, u, kind="class")
        if "parent" in slots:
            parent = slots["parent"].replace("&", "").replace(" ", "")
            pt = self.b.one(self.b.types, parent, u)
            if pt:
                pcls = self.cls(pt)
                out["parent"] = pcls["name"]
                members = {**pcls.get("members", {}), **members}
        out["members"] = members
        if absent:
            out["absent"] = absent
        if "make_new" in slots:
            out["constructor"] = self.make_new(u, slots["make_new"].strip())
        if "call" in slots:
            out["call"] = self.check_num_only(u, slots["call"].strip())
        if "attr" in slots:
            out["attr_slot"] = True  # attributes beyond the locals dict exist (dynamic)
        return out

    def make_new(self, u: Unit, fun: str) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": "constructor", "c_fun": fun}
        found = self.find_func(u, fun)
        if found is None:
            out["note"] = "make_new not found"
            return out
        fu, fn = found
        out["source"] = fu.where(fn.start)
        cn = check_num(fn)
        if cn:
            out["sig"] = cn
        m = re.search(
            r"if\s*\(\s*\w+\s*<\s*(\d+)\s*\)\s*\{?\s*mp_raise_TypeError\(\s*MP_ERROR_TEXT\(\s*\"([^\"]*)\"",
            fn.body,
        )
        if m:  # a hand-written minimum (esp32.PCNT: `if (n_pos_args < 1) TypeError("id")`)
            out["min_positional"] = {"min": int(m.group(1)), "message": m.group(2)}
        if cn and not cn["kw"]:
            out["kwargs"] = "none"
        else:
            out.update(self.kw_parse(fu, fun))
        out["signature"] = signature(out, "constructor")
        return out

    def check_num_only(self, u: Unit, fun: str) -> dict[str, Any]:
        out: dict[str, Any] = {"kind": "call", "c_fun": fun}
        found = self.find_func(u, fun)
        if found:
            out["source"] = found[0].where(found[1].start)
            cn = check_num(found[1])
            if cn:
                out["sig"] = cn
        return out


def relative(conds: Conds, outer: Conds) -> tuple[str, ...]:
    """The conditions in `conds` beyond those it shares with `outer` (e.g. the table's)."""
    k = 0
    while k < min(len(conds), len(outer)) and conds[k] == outer[k]:
        k += 1
    return tuple(text for f, text in conds[k:] if f.endswith(".c"))


def call_args(text: str, open_idx: int) -> list[str]:
    end = matching(text, open_idx)
    return [" ".join(a) for a in split_args(tokenize(text[open_idx:end]), 0)[0]]


def calls(body: str) -> list[tuple[str, list[str], int]]:
    out = []
    for m in re.finditer(r"\b([A-Za-z_]\w*)\s*\(", body):
        if m.group(1) in KEYWORDS:
            continue
        try:
            out.append((m.group(1), call_args(body, m.end() - 1), m.start()))
        except GenError:
            continue
    return out


def kw_names(fn: Func) -> list[str]:
    """How the function refers to its keyword map: its `mp_map_t *x` parameter, or `&x` for a
    local `mp_map_t x` (make_new builds one from n_kw)."""
    names = [m.group(1) for m in re.finditer(r"mp_map_t\s*\*\s*(\w+)", fn.params)]
    names += ["&" + m.group(1) for m in re.finditer(r"\bmp_map_t\s+(\w+)\s*;", fn.body)]
    return names


def n_param(fn: Func) -> str | None:
    """The positional-count parameter: the size_t/mp_uint_t one (n_args, n_pos_args...)."""
    m = re.search(r"(?:size_t|mp_uint_t)\s+(n_\w*args\w*|n_pos\w*)", fn.params)
    return m.group(1) if m else None


def check_num(fn: Func) -> dict[str, Any] | None:
    m = re.search(r"\bmp_arg_check_num\s*\(([^;]*)\)\s*;", fn.body)
    if not m:
        return None
    parts = [p.strip() for p in m.group(1).split(",")]
    lo, hi, kw = parts[2], parts[3], parts[4]
    hi_v = None if hi == "MP_OBJ_FUN_ARGS_MAX" else c_int(hi)
    return {"min": c_int(lo), "max": hi_v, "kw": kw == "true"}


def signature(e: dict[str, Any], kind: str) -> str:
    """A readable Python-level summary (self not shown; <unset>: the C code sees "not given")."""
    self_n = 1 if kind in ("method", "classmethod") else 0
    parts: list[str] = []
    if e.get("kwargs") == "parsed":
        if e.get("leading") is None:
            parts.append("<positional args: checked by hand in C>")
        else:
            parts += [f"<arg{k}>" for k in range(e["leading"] - self_n)]
            if e.get("leading_optional") and parts:
                parts[-1] = "[" + parts[-1] + "]"
        star = False
        for a in e["args"]:
            if a["kw_only"] and not star:
                parts.append("*")
                star = True
            p = a["name"]
            if not a["required"]:
                p += "=" + (repr(a["default"]) if "default" in a else "<unset>")
            parts.append(p)
        return "(" + ", ".join(parts) + ")"
    sig = e.get("sig") or {}
    if sig.get("min") is not None:
        lo = sig["min"] - self_n
        hi = sig.get("max")
        hi_s = "" if hi is None or hi >= 0xFFFF else str(hi - self_n)
        parts.append(f"<{lo} positional>" if hi_s == str(lo) else f"<{lo}..{hi_s} positional>")
    if e.get("kwargs") in ("ignored", "unknown"):
        parts.append(f"**{e['kwargs']}")
    return "(" + ", ".join(parts) + ")"


# -- the frozen machine.py (machine.Counter, machine.Encoder) ---------------------------------


def frozen_machine(src: Source, esp32: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """Python classes and names that ports/esp32/modules/machine.py adds to `machine` (it does
    `from machine import *` and is frozen into the firmware, so `import machine` finds it)."""
    text = src.read(FROZEN_MACHINE) or ""
    tree = ast.parse(text)
    added: dict[str, Any] = {}
    classes: dict[str, ast.ClassDef] = {}

    def run(stmts: list[ast.stmt]) -> None:
        for s in stmts:
            if isinstance(s, ast.If):
                run(s.body if frozen_test(s.test, esp32) else s.orelse)
            elif isinstance(s, ast.ClassDef):
                classes[s.name] = s
                added[s.name] = None
            elif isinstance(s, ast.ImportFrom) and s.module and s.names[0].name != "*":
                for a in s.names:
                    added[a.asname or a.name] = {
                        "kind": "object",
                        "c": f"from {s.module} import {a.name}",
                        "source": f"{FROZEN_MACHINE}:{s.lineno}",
                    }
            elif isinstance(s, ast.Delete):
                for tgt in s.targets:
                    if isinstance(tgt, ast.Name):
                        added.pop(tgt.id, None)

    run(tree.body)
    pcnt = esp32["members"].get("PCNT", {}).get("members", {})
    for name in list(added):
        if added[name] is None:
            added[name] = py_class(classes[name], classes, pcnt)
    notes = [
        f"machine.{n}: Python class frozen from {FROZEN_MACHINE}"
        for n, v in added.items()
        if v.get("kind") == "class"
    ]
    return added, notes


def frozen_test(test: ast.expr, esp32: dict[str, Any]) -> bool:
    """`hasattr(esp32, "X")`, decided with the esp32 table."""
    if (
        isinstance(test, ast.Call)
        and isinstance(test.func, ast.Name)
        and test.func.id == "hasattr"
        and isinstance(test.args[1], ast.Constant)
    ):
        return test.args[1].value in esp32["members"]
    raise GenError(f"{FROZEN_MACHINE}: unsupported condition {ast.unparse(test)}")


def py_value(node: ast.expr | None, scope: dict[str, Any], pcnt: dict[str, Any]) -> Any:
    """Literal, a class attribute defined earlier, or X._PCNT.NAME (an esp32.PCNT constant)."""
    if node is None:
        return None
    if isinstance(node, ast.Constant):
        return node.value
    if isinstance(node, ast.Name) and node.id in scope:
        return scope[node.id]
    if (
        isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Attribute)
        and node.value.attr == "_PCNT"
        and node.attr in pcnt
    ):
        return pcnt[node.attr].get("value")
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = py_value(node.operand, scope, pcnt)
        return -inner if isinstance(inner, int) else None
    return None


def py_params(fn: ast.FunctionDef, scope: dict[str, Any], pcnt: dict[str, Any]) -> dict[str, Any]:
    """The parameters of a Python method, without `self`; defaults resolved where possible."""
    a = fn.args
    pos = a.posonlyargs + a.args
    defaults: list[ast.expr | None] = [None] * (len(pos) - len(a.defaults)) + list(a.defaults)
    pairs = [(x, d, False) for x, d in zip(pos, defaults, strict=True)]
    pairs += [(x, d, True) for x, d in zip(a.kwonlyargs, a.kw_defaults, strict=True)]
    params = []
    for arg, d, kw_only in pairs[1:]:
        p: dict[str, Any] = {"name": arg.arg, "kw_only": kw_only, "required": d is None}
        if d is not None:
            p["default_py"] = ast.unparse(d)
            p["default"] = py_value(d, scope, pcnt)
        params.append(p)
    return {
        "params": params,
        "varargs": a.vararg is not None,
        "varkw": a.kwarg is not None,
        "source": f"{FROZEN_MACHINE}:{fn.lineno}",
    }


def py_class(
    c: ast.ClassDef, classes: dict[str, ast.ClassDef], pcnt: dict[str, Any]
) -> dict[str, Any]:
    """A frozen Python class: its attributes (base class first, then overrides) and the
    constructor's parameters."""
    chain = [c]
    while chain[-1].bases and isinstance(chain[-1].bases[0], ast.Name):
        base = classes.get(chain[-1].bases[0].id)
        if base is None:
            break
        chain.append(base)
    members: dict[str, Any] = {}
    funcs: dict[str, ast.FunctionDef] = {}
    scope: dict[str, Any] = {}
    for k in reversed(chain):
        for s in k.body:
            if isinstance(s, ast.Assign) and isinstance(s.targets[0], ast.Name):
                val = py_value(s.value, scope, pcnt)
                scope[s.targets[0].id] = val
                members[s.targets[0].id] = {
                    "kind": "constant" if isinstance(val, int | str) else "object",
                    "value": val,
                    "c": ast.unparse(s.value),
                    "source": f"{FROZEN_MACHINE}:{s.lineno}",
                }
            elif isinstance(s, ast.FunctionDef):
                funcs[s.name] = s
    for name, fn in funcs.items():
        if name not in ("__new__", "__init__"):
            members[name] = {"kind": "method", "python": True, **py_params(fn, scope, pcnt)}
    out: dict[str, Any] = {
        "kind": "class",
        "name": c.name,
        "python": True,
        "source": f"{FROZEN_MACHINE}:{c.lineno}",
        "members": members,
    }
    init = funcs.get("__init__")
    if init:
        ctor = {"kind": "constructor", "python": True, **py_params(init, scope, pcnt)}
        # __init__(self, unit_id, *args, filter_ns=0, **kwargs) passes *args/**kwargs on to
        # self._configure(...): the constructor's parameters are the merge of both.
        fwd = next(
            (
                n.func.attr
                for n in ast.walk(init)
                if isinstance(n, ast.Call)
                and isinstance(n.func, ast.Attribute)
                and any(isinstance(x, ast.Starred) for x in n.args)
            ),
            None,
        )
        if fwd in funcs:
            conf = py_params(funcs[fwd], scope, pcnt)["params"]
            fixed = [p for p in ctor["params"] if not p["kw_only"]]
            kwonly = [p for p in ctor["params"] if p["kw_only"]]
            ctor.update(params=fixed + conf + kwonly, varargs=False, varkw=False)
            ctor["forwards_to"] = fwd
            # Only the id: an existing instance is returned as it is (_configure not called).
            ctor["id_only_ok"] = True
        out["constructor"] = ctor
    return out


# -- assembly ---------------------------------------------------------------------------------


def build_units(src: Source) -> tuple[list[Unit], Preprocessor]:
    base = Preprocessor(src)
    base.macros.update(macros_from_text(src, TARGET_H, "<esp32 target>"))
    base.macros.update(macros_from_text(src, read_sdkconfig(src), "<sdkconfig>"))
    # The configuration headers, once, to learn which .c files are INCLUDEFILEs.
    cfg = Preprocessor(src, base.macros)
    cfg.run("py/mpconfig.h")
    includefiles = {
        "".join(m.body).strip('"')
        for name, m in cfg.macros.items()
        if name.endswith("_INCLUDEFILE") and m.body and m.body[0].startswith('"')
    }
    roots = [p for p in src.listdir("ports/esp32") if p.endswith(".c") and p not in includefiles]
    roots += [p for p in src.listdir("extmod") if re.match(r"extmod/machine_\w+\.c$", p)]
    roots += [p for p in EXTRA_ROOTS if p not in roots]
    units = []
    for r in roots:
        pp = Preprocessor(src, base.macros)
        pp.run(r)
        units.append(Unit(r, pp))
    return units, cfg


def macros_from_text(src: Source, text: str, name: str) -> dict[str, Macro]:
    pp = Preprocessor(src)
    for lineno, line in logical_lines(text):
        m = re.match(r"\s*#\s*(\w+)\s*(.*)", line)
        if m:
            pp.directive(name, lineno, m.group(1), m.group(2).strip())
    return pp.macros


def generate(src: Source) -> dict[str, Any]:
    units, cfg = build_units(src)
    ex = Extractor(units)
    modules = {name: ex.module(name) for name in MODULES}
    added, notes = frozen_machine(src, modules["esp32"])
    for name, entry in added.items():
        modules["machine"]["members"][name] = entry
    unknown = sorted(
        {n for u in units for n in u.pp.unknown} | cfg.unknown,
    )
    return {
        "source": {
            "repo": "micropython/micropython",
            "commit": src.commit,
            "describe": src.describe,
        },
        "board": "ESP32_GENERIC",
        "generator": "tools/twin/gen_api.py",
        "semantics": SEMANTICS,
        "modules": modules,
        "notes": sorted(set(ex.notes)) + notes,
        "assumed_undefined": [n for n in unknown if not n.startswith("__")],
    }


SEMANTICS = {
    "sig": "the builtin's own argument check (py/objfun.c -> mp_arg_check_num_sig), C-level: "
    "methods count self, classmethods the class; for a constructor, make_new's "
    "mp_arg_check_num (max null: unbounded)",
    "args": "the mp_arg_t allowed_args[] that mp_arg_parse_all reads (py/argcheck.c): the "
    "positional args after `leading` fill it in order (a kw_only entry there is an error), "
    "keywords must name an entry not filled by position",
    "leading": "C-level positional args the C code takes before `args` (self for methods, the "
    "id for Pin/UART/ADC); leading_optional: it may be absent (machine.Timer's id)",
    "extra_positional": "error: mp_arg_parse_all refuses extra positional args; unchecked: "
    "`args` gets none, the C code handles positional args by hand (esp32.PCNT drops all after "
    "the id; ADCBlock.connect takes 1 or 2)",
    "kwargs": "parsed (see args), ignored (accepted, never read), none (sig.kw false), "
    "unknown (read by hand-written C, or no table found: not modelled; any keyword accepted)",
    "args_source": "where the allowed_args table is: in args_fun's own compilation unit (a "
    "port file an extmod file includes as its *_INCLUDEFILE is part of that unit), or with "
    "args_linkage extern, a non-static table the unit declares `extern` (shared/runtime/mpirq.c)",
    "args_note": "why kwargs is unknown where a table or a call was not followed",
    "args_fun": "the C function that calls mp_arg_parse_all (args_fun_source: its body); "
    "reached from c_fun through calls in c_fun's unit, or to a non-static function elsewhere",
    "min_positional": "a hand-written minimum and its TypeError message (esp32.PCNT: 'id')",
    "cond": "the #if, relative to the enclosing table's, under which the entry is compiled",
    "absent": "names in the same source table that the generic ESP32 build compiles out",
    "python": "a class or method of the frozen ports/esp32/modules/machine.py (Python rules)",
    "errors": {
        "unknown keyword": "TypeError: extra keyword arguments given",
        "keyword to a builtin without keywords": "TypeError: function doesn't take keyword "
        "arguments",
        "extra positional for args": "TypeError: extra positional arguments given",
        "missing required": "TypeError: '<name>' argument required",
        "unknown attribute": "AttributeError: '<type>' object has no attribute '<name>'",
        "unknown module attribute": "AttributeError: 'module' object has no attribute '<name>'",
    },
}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        prog="python -m tools.twin.gen_api",
        description="Write the ESP32 port's API table (machine, esp32, time) from MicroPython's "
        "C source, for the board twin.",
    )
    ap.add_argument(
        "--mpy-src",
        required=True,
        type=Path,
        help="MicroPython work tree, or bare git dir (its HEAD is read)",
    )
    ap.add_argument(
        "--out",
        type=Path,
        default=OUT_DEFAULT,
        help="output JSON (default: tools/twin/esp32_api.json)",
    )
    args = ap.parse_args(argv)
    try:
        if not args.mpy_src.exists():
            raise GenError(f"{args.mpy_src}: no such directory")
        table = generate(Source(args.mpy_src))
    except GenError as e:
        print(f"gen_api: {e}", file=sys.stderr)
        return 2
    args.out.write_text(dumps(table))
    m = table["modules"]
    print(
        f"{args.out}: machine {len(m['machine']['members'])}, esp32 {len(m['esp32']['members'])}, "
        f"time {len(m['time']['members'])} names ({table['source']['describe']})"
    )
    return 0


def dumps(table: dict[str, Any]) -> str:
    return json.dumps(table, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


if __name__ == "__main__":
    sys.exit(main())
