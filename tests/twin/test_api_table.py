"""The ESP32 API table (tools/twin/esp32_api.json, from MicroPython's C source) and the firmware.

- The table has its shape and the facts read off the C source (cited per test).
- Coverage: every `machine`/`esp32`/`time` name, call and keyword the firmware uses is one the
  ESP32 port accepts (the firmware's ESP32-only HAL cannot run on this host; this is how a
  keyword the port refuses is caught before a board does).
- The table is what tools/twin/gen_api.py makes from the pinned MicroPython commit.
- tools/twin/board/api.py refuses and accepts under the real MicroPython binary too.
"""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests import mpy
from tools.twin import api, gen_api

ROOT = Path(__file__).resolve().parents[2]
FIRMWARE = ROOT / "firmware"
HAL = FIRMWARE / "lib" / "app" / "hal_esp32.py"
MIRROR = Path("/work/.mirror/micropython+micropython/repo")
TABLE = api.load()
MODULES = ("machine", "esp32", "time")
# Unix-port-only modules (the simulated HAL and its I/O): their `time` is the unix port's.
UNIX_ONLY = {"lib/app/hal_sim.py", "lib/app/sim_io.py"}


def member(module: str, *path: str) -> dict[str, Any]:
    e: dict[str, Any] = TABLE["modules"][module]
    for name in path:
        e = e["members"][name]
    return e


def arg_names(entry: dict[str, Any]) -> list[str]:
    return [a["name"] for a in entry["args"]]


# -- shape and facts --------------------------------------------------------------------------


def test_table_shape():
    assert TABLE["source"]["repo"] == "micropython/micropython"
    assert len(TABLE["source"]["commit"]) == 40
    assert set(TABLE["modules"]) == set(MODULES)
    for module in MODULES:
        for name, e in TABLE["modules"][module]["members"].items():
            assert e["kind"] in ("class", "function", "constant", "object"), (module, name)
            assert e.get("source"), (module, name)
            if e["kind"] == "class":
                assert isinstance(e["members"], dict)
                for mname, m in e["members"].items():
                    assert m["kind"] in (
                        "method", "staticmethod", "classmethod", "constant", "object", "class",
                    ), (name, mname)  # fmt: skip
                    assert m.get("source"), (name, mname)


def test_pin_irq_takes_handler_trigger_wake_only():
    # ports/esp32/machine_pin.c machine_pin_irq: allowed_args handler, trigger, wake (no hard)
    irq = member("machine", "Pin", "irq")
    assert arg_names(irq) == ["handler", "trigger", "wake"]
    assert irq["args_source"].startswith("ports/esp32/machine_pin.c:")
    assert [a["default"] for a in irq["args"]] == [None, 3, None]  # POSEDGE | NEGEDGE


def test_pin_constants():
    # ESP-IDF gpio_types.h values, via ports/esp32/machine_pin.c's locals dict
    pin = member("machine", "Pin")["members"]
    values = {k: pin[k]["value"] for k in ("IN", "OUT", "OPEN_DRAIN", "PULL_UP", "PULL_DOWN")}
    assert values == {"IN": 1, "OUT": 3, "OPEN_DRAIN": 7, "PULL_UP": 2, "PULL_DOWN": 1}
    assert (pin["IRQ_RISING"]["value"], pin["IRQ_FALLING"]["value"]) == (1, 2)
    ctor = member("machine", "Pin")["constructor"]
    assert arg_names(ctor) == ["mode", "pull", "value", "drive", "hold"]
    assert ctor["leading"] == 1  # the pin id


def test_adc():
    # extmod/machine_adc.c (locals) + ports/esp32/machine_adc.c (make_new, madc_init_helper)
    adc = member("machine", "ADC")
    assert arg_names(adc["constructor"]) == ["atten"]
    assert adc["constructor"]["args"][0]["kw_only"]
    for name in ("read_u16", "read_uv", "read", "atten", "width", "init", "deinit", "block"):
        assert adc["members"][name]["kind"] == "method", name
    assert adc["members"]["ATTN_11DB"]["value"] == 3
    assert adc["members"]["WIDTH_12BIT"]["value"] == 12
    assert "WIDTH_13BIT" not in adc["members"]  # SOC_ADC_RTC_MAX_BITWIDTH is 12 on the ESP32
    assert set(adc["absent"]) == {"read_timed", "busy"}


def test_uart():
    # ports/esp32/machine_uart.c mp_machine_uart_init_helper; extmod/machine_uart.c locals
    uart = member("machine", "UART")
    expected = ["baudrate", "bits", "parity", "stop", "tx", "rx", "rts", "cts", "txbuf", "rxbuf"]
    expected += ["timeout", "timeout_char", "invert", "flow"]
    assert arg_names(uart["members"]["init"]) == expected
    assert arg_names(uart["constructor"]) == expected
    assert uart["constructor"]["leading"] == 1  # the UART id
    for name in ("flush", "txdone", "readinto", "any", "write", "read", "sendbreak", "irq"):
        assert uart["members"][name]["kind"] == "method", name
    assert arg_names(uart["members"]["irq"]) == ["handler", "trigger", "hard"]  # mpirq.c
    assert uart["members"]["INV_TX"]["value"] == 32


def test_wdt_rtc_timer():
    # extmod/machine_wdt.c machine_wdt_make_new: id=0, timeout=5000; no timeout_ms on ESP32
    wdt = member("machine", "WDT")
    assert arg_names(wdt["constructor"]) == ["id", "timeout"]
    assert [a.get("default") for a in wdt["constructor"]["args"]] == [0, 5000]
    assert set(wdt["members"]) == {"feed"}
    # ports/esp32/machine_rtc.c: RTC() takes no arguments
    rtc = member("machine", "RTC")
    assert rtc["constructor"]["sig"] == {"min": 0, "max": 0, "kw": False}
    assert set(rtc["members"]) == {"init", "datetime", "memory"}
    timer = member("machine", "Timer")["constructor"]
    assert timer["leading_optional"] and "hard" in arg_names(timer)


def test_reset_causes_and_freq():
    # ports/esp32/modmachine.c reset_reason_t; extmod/modmachine.c machine_freq (0..1 args)
    values = {k: member("machine", k)["value"] for k in ("PWRON_RESET", "HARD_RESET")}
    values |= {k: member("machine", k)["value"] for k in ("WDT_RESET", "DEEPSLEEP_RESET")}
    values["SOFT_RESET"] = member("machine", "SOFT_RESET")["value"]
    assert values == {
        "PWRON_RESET": 1, "HARD_RESET": 2, "WDT_RESET": 3, "DEEPSLEEP_RESET": 4, "SOFT_RESET": 5,
    }  # fmt: skip
    assert member("machine", "freq")["sig"] == {"min": 0, "max": 1, "kw": False}
    assert member("machine", "reset_cause")["sig"] == {"min": 0, "max": 0, "kw": False}


def test_counter_encoder_and_pcnt():
    # machine.Counter/Encoder are Python classes in ports/esp32/modules/machine.py (frozen),
    # built on esp32.PCNT (ports/esp32/esp32_pcnt.c; MICROPY_PY_ESP32_PCNT = SOC_PCNT_SUPPORTED).
    counter = member("machine", "Counter")
    assert counter["python"] and counter["source"].startswith("ports/esp32/modules/machine.py")
    params = [p["name"] for p in counter["constructor"]["params"]]
    assert params == ["unit_id", "src", "edge", "direction", "filter_ns"]
    assert {k: counter["members"][k]["value"] for k in ("RISING", "FALLING", "UP", "DOWN")} == {
        "RISING": 1, "FALLING": 2, "UP": 1, "DOWN": 2,
    }  # fmt: skip
    assert {"init", "deinit", "value"} <= set(counter["members"])
    encoder = member("machine", "Encoder")
    assert [p["name"] for p in encoder["constructor"]["params"]] == [
        "unit_id", "phase_a", "phase_b", "phases", "filter_ns",
    ]  # fmt: skip
    pcnt = member("esp32", "PCNT")
    expected = ["channel", "pin", "rising", "falling", "mode_pin", "mode_low", "mode_high"]
    expected += ["min", "max", "filter", "threshold0", "threshold1", "value"]
    assert arg_names(pcnt["constructor"]) == expected
    assert arg_names(pcnt["members"]["irq"]) == ["handler", "trigger"]
    assert {"init", "value", "irq", "start", "stop", "deinit"} <= set(pcnt["members"])


PWM_ARGS = ["freq", "duty", "duty_u16", "duty_ns", "invert", "lightsleep"]


def test_pwm_takes_its_own_table():
    # ports/esp32/machine_pwm.c mp_machine_pwm_init_helper: a plain (not static const) local
    # `mp_arg_t allowed_args[] = { freq, duty, duty_u16, duty_ns, invert, lightsleep }`, all
    # but freq kw-only; make_new (1..2 positional: the pin, freq) and PWM.init both use it. The
    # table once came out as esp32.Partition's (type, subtype, label, block_size).
    pwm = member("machine", "PWM")
    for e in (pwm["constructor"], pwm["members"]["init"]):
        assert arg_names(e) == PWM_ARGS
        assert [a["kw_only"] for a in e["args"]] == [False] + [True] * 5
        assert e["args_source"].startswith("ports/esp32/machine_pwm.c:")
        assert e["args_fun"] == "mp_machine_pwm_init_helper"
    assert pwm["constructor"]["leading"] == 1  # the pin
    assert pwm["constructor"]["sig"] == {"min": 1, "max": 2, "kw": True}


def test_checker_pwm_keywords():
    c = api.check_call
    kws = ["freq", "duty_u16", "duty_ns", "invert", "lightsleep"]
    assert c("machine", "PWM", None, 1, kws) is None
    assert c("machine", "PWM", None, 2, kws[1:]) is None  # PWM(pin, 1000, ...)
    assert c("machine", "PWM", "init", 0, kws) is None
    assert c("machine", "PWM", "init", 1, ["duty"]) is None
    for name in (None, "init"):
        err = c("machine", "PWM", name, 1 if name is None else 0, ["type"])
        assert err is not None and err.startswith("TypeError: extra keyword arguments given")
        assert "'type'" in err and "lightsleep" in err
    assert c("machine", "PWM", "init", 2).startswith("TypeError: extra positional arguments")


def test_checker_accepts_any_keyword_for_unknown_entries():
    # kwargs "unknown": the C code's keywords are not modelled (no table found, or passed on to
    # a protocol's function pointer), so nothing can be refused; the entry says why.
    for cls in ("I2C", "SPI", "SoftI2C", "SoftSPI"):
        init = member("machine", cls, "init")
        assert init["kwargs"] == "unknown" and "init(...)" in init["args_note"], cls
        assert api.check_call("machine", cls, "init", 0, ["anything", "at_all"]) is None
    entry = {"kind": "function", "sig": {"min": 0, "max": None, "kw": True}, "kwargs": "unknown"}
    table = {"modules": {"machine": {"members": {"f": entry}}}}
    assert api.check_call("machine", None, "f", 3, ["x", "y"], table=table) is None


def test_checker_answers_like_the_port():
    c = api.check_call
    assert c("machine", "Pin", "irq", 1, ["hard"]).startswith(
        "TypeError: extra keyword arguments given"
    )
    assert "'hard'" in c("machine", "Pin", "irq", 1, ["hard"])
    assert c("machine", "Pin", "irq", 0, ["handler", "trigger"]) is None
    assert c("machine", "ADC", "read_mv", 0).startswith("AttributeError: 'ADC' object has no")
    assert c("machine", "UART", "write", 1, ["x"]).startswith(
        "TypeError: function doesn't take keyword arguments"
    )
    assert c("machine", "ADC", None, 2).startswith("TypeError: extra positional arguments")
    assert c("machine", "RTC", None, 1).startswith(
        "TypeError: function takes 0 positional arguments but 1 were given"
    )
    assert c("machine", None, "WDT", 0, ["timeout"]) is None


# -- coverage: the firmware's uses of machine/esp32/time ---------------------------------------


@dataclass(frozen=True)
class Kind:
    """What an expression is, as far as this simple analysis can tell."""

    what: str  # "module", "class", "instance" or "list" (of instances)
    module: str
    cls: str | None = None


@dataclass
class Use:
    file: str
    line: int
    text: str
    module: str
    cls: str | None
    name: str | None
    nargs: int | None
    kwargs: tuple[str, ...]


class Uses:
    """Finds uses of the ESP32 modules in one file: `machine.X(...)`, `P = machine.Pin`,
    `machine.ADC.ATTN_11DB`, and calls on names or `self.` attributes assigned from a
    constructor (also lists of them: `[P(p) for p in ...]`, `mux = self.mux; mux[0].value()`)."""

    def __init__(self, rel: str, source: str, modules: tuple[str, ...]):
        self.rel = rel
        self.source = source
        self.modules = modules
        self.uses: list[Use] = []
        self.record = True

    def run(self) -> list[Use]:
        tree = ast.parse(self.source)
        env: dict[str, Kind] = {}
        self.block(tree.body, env)
        return self.uses

    def block(self, body: list[ast.stmt], env: dict[str, Kind]) -> None:
        for s in body:
            self.stmt(s, env)

    def stmt(self, s: ast.stmt, env: dict[str, Kind]) -> None:
        if isinstance(s, ast.Import):
            for a in s.names:
                if a.name in self.modules:
                    env[a.asname or a.name] = Kind("module", a.name)
        elif isinstance(s, ast.ImportFrom):
            if s.module in self.modules:
                for a in s.names:
                    self.use(s, s.module, None, a.name, None, ())
                    k = self.attr_kind(Kind("module", s.module), a.name)
                    if k:
                        env[a.asname or a.name] = k
        elif isinstance(s, ast.ClassDef):
            methods = [f for f in s.body if isinstance(f, ast.FunctionDef)]
            cenv = dict(env)  # plus the self.<attr> kinds, shared by the methods
            self.record = False  # first pass: learn what __init__ & co. assign to self
            for f in methods:
                local = dict(cenv)
                self.block(f.body, local)
                cenv.update({k: v for k, v in local.items() if k.startswith("self.")})
            self.record = True
            for f in methods:
                self.block(f.body, dict(cenv))
        elif isinstance(s, ast.FunctionDef):
            self.block(s.body, dict(env))
        elif isinstance(s, ast.Assign):
            k = self.expr(s.value, env)
            for t in s.targets:
                key = target_key(t)
                if key and k:
                    env[key] = k
                elif key:
                    env.pop(key, None)
                else:
                    self.expr(t, env)
        elif isinstance(s, ast.For):
            k = self.expr(s.iter, env)
            key = target_key(s.target)
            if key and k and k.what == "list":
                env[key] = Kind("instance", k.module, k.cls)
            self.block(s.body, env)
            self.block(s.orelse, env)
        else:
            for _field, value in ast.iter_fields(s):
                items = value if isinstance(value, list) else [value]
                for v in items:
                    if isinstance(v, ast.stmt):
                        self.stmt(v, env)
                    elif isinstance(v, ast.expr):
                        self.expr(v, env)
                    elif isinstance(v, ast.excepthandler):
                        self.block(v.body, env)
                    elif isinstance(v, ast.withitem):
                        self.expr(v.context_expr, env)

    def expr(self, e: ast.expr, env: dict[str, Kind]) -> Kind | None:
        if isinstance(e, ast.Name):
            return env.get(e.id)
        if isinstance(e, ast.Attribute):
            key = target_key(e)
            if key and key in env:
                return env[key]
            base = self.expr(e.value, env)
            if base and base.what in ("module", "class", "instance"):
                self.use(e, base.module, base.cls, e.attr, None, ())
                return self.attr_kind(base, e.attr)
            return None
        if isinstance(e, ast.Call):
            return self.call(e, env)
        if isinstance(e, ast.Subscript):
            base = self.expr(e.value, env)
            self.expr(e.slice, env)
            if base and base.what == "list":
                return Kind("instance", base.module, base.cls)
            return None
        if isinstance(e, ast.List | ast.Tuple):
            kinds = {self.expr(x, env) for x in e.elts}
            one = kinds.pop() if len(kinds) == 1 else None
            return Kind("list", one.module, one.cls) if one and one.what == "instance" else None
        if isinstance(e, ast.ListComp):
            inner = dict(env)
            for g in e.generators:
                k = self.expr(g.iter, inner)
                key = target_key(g.target)
                if key and k and k.what == "list":
                    inner[key] = Kind("instance", k.module, k.cls)
                for cond in g.ifs:
                    self.expr(cond, inner)
            elt = self.expr(e.elt, inner)
            if elt and elt.what == "instance":
                return Kind("list", elt.module, elt.cls)
            return None
        for child in ast.iter_child_nodes(e):
            if isinstance(child, ast.expr):
                self.expr(child, env)
        return None

    def call(self, e: ast.Call, env: dict[str, Kind]) -> Kind | None:
        for a in e.args:
            self.expr(a.value if isinstance(a, ast.Starred) else a, env)
        for kw in e.keywords:
            self.expr(kw.value, env)
        dynamic = any(isinstance(a, ast.Starred) for a in e.args) or any(
            kw.arg is None for kw in e.keywords
        )
        nargs = None if dynamic else len(e.args)
        kwargs = tuple(kw.arg for kw in e.keywords if kw.arg)
        f = e.func
        if isinstance(f, ast.Attribute) and not (target_key(f) and target_key(f) in env):
            base = self.expr(f.value, env)
            if base and base.what in ("module", "class", "instance"):
                k = self.attr_kind(base, f.attr)
                if k:  # machine.UART(...): a constructor call
                    self.use(e, k.module, k.cls, None, nargs, kwargs)
                    return Kind("instance", k.module, k.cls)
                self.use(e, base.module, base.cls, f.attr, nargs, kwargs)
            return None
        k = self.expr(f, env)
        if k and k.what == "class":
            self.use(e, k.module, k.cls, None, nargs, kwargs)
            return Kind("instance", k.module, k.cls)
        return None

    def attr_kind(self, base: Kind, attr: str) -> Kind | None:
        """A class reached through the module (machine.Pin) or its class (Pin.board)."""
        if base.what != "module":
            return None
        entry = TABLE["modules"][base.module]["members"].get(attr)
        if entry and entry["kind"] == "class":
            return Kind("class", base.module, attr)
        return None

    def use(self, node: ast.AST, module, cls, name, nargs, kwargs) -> None:
        if self.record:
            text = ast.get_source_segment(self.source, node) or ""
            line = getattr(node, "lineno", 0)
            self.uses.append(Use(self.rel, line, text, module, cls, name, nargs, kwargs))


def target_key(t: ast.expr) -> str | None:
    """`x` or `self.x` (the names this analysis tracks)."""
    if isinstance(t, ast.Name):
        return t.id
    if isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name) and t.value.id == "self":
        return "self." + t.attr
    return None


def firmware_uses() -> list[Use]:
    out: list[Use] = []
    for path in sorted(FIRMWARE.rglob("*.py")):
        rel = path.relative_to(FIRMWARE).as_posix()
        modules = ("machine", "esp32") if rel in UNIX_ONLY else MODULES
        out += Uses(rel, path.read_text(), modules).run()
    return out


def violations(uses: list[Use]) -> list[str]:
    out = []
    for u in uses:
        err = api.check_call(u.module, u.cls, u.name, u.nargs, u.kwargs)
        if err:
            out.append(f"firmware/{u.file}:{u.line}: {u.text}: {err}")
    return out


def test_coverage_sees_every_direct_use():
    # Guards the analysis itself: each line of the firmware that names `machine.`, `esp32.` or
    # `time.` outside a comment or string yields at least one checked use, and the HAL's core
    # uses (constructors, methods on objects made from them, aliases) are all seen.
    uses = firmware_uses()
    lines = {(u.file, u.line) for u in uses}
    for path in sorted(FIRMWARE.rglob("*.py")):
        rel = path.relative_to(FIRMWARE).as_posix()
        modules = ("machine", "esp32") if rel in UNIX_ONLY else MODULES
        for node in ast.walk(ast.parse(path.read_text())):
            if (
                isinstance(node, ast.Attribute)
                and isinstance(node.value, ast.Name)
                and node.value.id in modules
            ):
                assert (rel, node.lineno) in lines, f"firmware/{rel}:{node.lineno}: not analysed"
    seen = {(u.module, u.cls, u.name) for u in uses if u.file == "lib/app/hal_esp32.py"}
    for use in [
        ("machine", "UART", None),
        ("machine", "UART", "txdone"),
        ("machine", "UART", "readinto"),
        ("machine", "UART", "write"),
        ("machine", "Pin", None),
        ("machine", "Pin", "OUT"),
        ("machine", "Pin", "value"),
        ("machine", "ADC", None),
        ("machine", "ADC", "ATTN_11DB"),
        ("machine", "RTC", "datetime"),
        ("machine", "WDT", None),
        ("machine", "WDT", "feed"),
        ("machine", None, "reset_cause"),
        ("machine", None, "reset"),
        ("time", None, "ticks_us"),
    ]:
        assert use in seen, use


HAL_HAS_HARD_IRQ = "hard=True" in HAL.read_text()
# The HAL as it was before the twin (kept by tests/twin/test_board_twin.py): it passed
# Pin.irq(..., hard=True), which the ESP32 port refuses.
PRE_TWIN_HAL = Path(__file__).resolve().parent / "fixtures" / "hal_esp32_before_twin.py"


class HardIrqKeyword(Exception):
    """The one known violation: hal_esp32.py passes Pin.irq(..., hard=True), which the ESP32
    port's machine_pin_irq refuses (TypeError: extra keyword arguments given)."""


def split_known(found: list[str], prefix: str) -> tuple[list[str], list[str]]:
    known = [v for v in found if v.startswith(prefix) and "keyword argument 'hard'" in v]
    return known, [v for v in found if v not in known]


@pytest.mark.xfail(
    HAL_HAS_HARD_IRQ,
    reason="hal_esp32.py calls Pin.irq(..., hard=True); the ESP32 port has no `hard` keyword",
    raises=HardIrqKeyword,
    strict=True,
)
def test_firmware_uses_only_what_the_esp32_port_accepts():
    # Expected to fail exactly while hal_esp32.py contains `hard=True` (then only with
    # HardIrqKeyword: any other violation is a plain failure); strict, so a checker that stopped
    # seeing it fails too. Without `hard=True` in the HAL this is an ordinary test.
    known, others = split_known(violations(firmware_uses()), "firmware/lib/app/hal_esp32.py:")
    assert not others, "the ESP32 port refuses:\n" + "\n".join(others)
    if known:
        raise HardIrqKeyword("the ESP32 port refuses:\n" + "\n".join(known))


@pytest.mark.skipif(not PRE_TWIN_HAL.exists(), reason="no pre-twin HAL fixture")
def test_the_pre_twin_hal_is_refused_with_file_line_and_keyword():
    source = PRE_TWIN_HAL.read_text()
    found = violations(Uses("lib/app/hal_esp32.py", source, MODULES).run())
    line = next(n for n, t in enumerate(source.splitlines(), 1) if "hard=True" in t)
    assert found == [
        f"firmware/lib/app/hal_esp32.py:{line}: "
        "self.arc_pin.irq(self._arc_irq, P.IRQ_FALLING, hard=True): "
        "TypeError: extra keyword arguments given "
        "[machine.Pin.irq: unexpected keyword argument 'hard' (allowed: handler, trigger, wake)]"
    ]


# -- the table is the generator's output for the pinned commit --------------------------------


@pytest.mark.skipif(not MIRROR.exists(), reason="no MicroPython mirror on this machine")
def test_generator_reproduces_the_table(tmp_path):
    out = tmp_path / "esp32_api.json"
    p = subprocess.run(
        [sys.executable, "-m", "tools.twin.gen_api", "--mpy-src", str(MIRROR), "--out", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert p.returncode == 0, p.stderr
    committed = api.TABLE.read_bytes()
    generated = out.read_bytes()
    if generated != committed and TABLE["source"]["commit"] != _mirror_commit():
        pytest.skip("the mirror is at another commit than the table")
    assert generated == committed


def _mirror_commit() -> str:
    return subprocess.run(
        ["git", "--git-dir", str(MIRROR), "rev-parse", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()


# -- every allowed_args table comes from the unit that parses it ------------------------------


def _entries_with_args(e: Any, path: str) -> list[tuple[str, dict[str, Any]]]:
    out = []
    if isinstance(e, dict):
        if "args_source" in e:
            out.append((path, e))
        for k, v in e.items():
            out += _entries_with_args(v, path if k == "members" else f"{path}.{k}")
    return out


def _file_line(where: str) -> tuple[str, int]:
    file, line = where.rsplit(":", 1)
    return file, int(line)


@pytest.mark.skipif(not MIRROR.exists(), reason="no MicroPython mirror on this machine")
def test_every_args_table_is_from_its_own_unit():
    # A static table is visible in its own compilation unit only: the .c file, plus the port
    # file an extmod file #includes as its MICROPY_PY_*_INCLUDEFILE (ports/esp32/mpconfigport.h).
    # Units and linkage are read here from the source itself, not from the generator.
    if TABLE["source"]["commit"] != _mirror_commit():
        pytest.skip("the mirror is at another commit than the table")
    src = gen_api.Source(MIRROR)
    config = src.read("ports/esp32/mpconfigport.h") or ""
    value = dict(re.findall(r'#define\s+(MICROPY_\w+_INCLUDEFILE)\s+"([^"]+\.c)"', config))
    includer = {}
    for f in src.listdir("extmod") + src.listdir("ports/esp32"):
        for macro in re.findall(r"#include\s+(MICROPY_\w+_INCLUDEFILE)", src.read(f) or ""):
            if macro in value:
                includer[value[macro]] = f

    def unit(file: str) -> str:
        return includer.get(file, file)

    def line_of(where: str) -> str:
        file, n = _file_line(where)
        return (src.read(file) or "").splitlines()[n - 1]

    def non_static_definition(name: str, where: str) -> bool:
        file, n = _file_line(where)  # the line of the body's '{'
        lines = (src.read(file) or "").splitlines()[:n]
        head = next(ln for ln in reversed(lines) if re.search(rf"\b{name}\s*\(", ln))
        return not head[:1].isspace() and "static" not in head.split(name)[0]

    headers = [f for d in ("py", "extmod", "shared/runtime") for f in src.listdir(d)]
    headers = [f for f in headers if f.endswith(".h")]
    entries = _entries_with_args(TABLE["modules"], "")
    assert len(entries) > 30
    assert unit("ports/esp32/machine_pwm.c") == "extmod/machine_pwm.c"
    crossings = []
    for path, e in entries:
        table_file = _file_line(e["args_source"])[0]
        fun_file = _file_line(e["args_fun_source"])[0]
        ref_file = _file_line(e["source"])[0]  # make_new, or the method's MP_DEFINE_*
        assert f"{e['args_fun']}(" in (src.read(fun_file) or ""), path
        if e.get("args_linkage") == "extern":
            # a file-scope table without `static`, declared extern in a header
            decl = line_of(e["args_source"])
            name = re.search(r"mp_arg_t\s+(\w+)", decl)
            assert name and not decl[:1].isspace() and "static" not in decl, (path, decl)
            extern = rf"extern\s+const\s+mp_arg_t\s+{name.group(1)}\s*\["
            assert any(re.search(extern, src.read(h) or "") for h in headers), path
            crossings.append(path)
        else:
            assert unit(table_file) == unit(fun_file), (path, e["args_source"], e["args_fun"])
        if unit(fun_file) != unit(ref_file):
            # parsed by a function of another unit: only one with external linkage
            assert non_static_definition(e["args_fun"], e["args_fun_source"]), path
            crossings.append(path)
    # The only ones whose table is not in c_fun's own unit, both through external linkage:
    # UART.irq (mpirq.c's extern mp_irq_init_args) and ADCBlock.connect (madc_init_helper).
    assert sorted(crossings) == [".machine.ADCBlock.connect", ".machine.UART.irq"]


def _unit(*parts: tuple[str, str]) -> gen_api.Unit:
    """A unit made of (file, C text) parts, as if preprocessed (no #directives)."""
    pp = gen_api.Preprocessor(None)  # type: ignore[arg-type]  # no files to read
    for file, text in parts:
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                pp.lines.append(gen_api.Line(file, n, line, ()))
    return gen_api.Unit(parts[0][0], pp)


PARSE = """
static void helper(size_t n_args, const mp_obj_t *pos_args, mp_map_t *kw_args) {
%s
    mp_arg_val_t args[MP_ARRAY_SIZE(allowed_args)];
    mp_arg_parse_all(n_args, pos_args, kw_args, MP_ARRAY_SIZE(allowed_args), allowed_args, args);
}
"""
OTHER_FUNCTION = """
static void other_helper(size_t n_args, const mp_obj_t *pos_args, mp_map_t *kw_args) {
    static const mp_arg_t allowed_args[] = {
        { MP_QSTR_type, MP_ARG_INT, {.u_int = 0} },
    };
}
"""
FILE_TABLE = """
static const mp_arg_t allowed_args[] = {
    { MP_QSTR_label, MP_ARG_OBJ, {.u_obj = mp_const_none} },
};
"""


@pytest.mark.parametrize("decl", ["static const mp_arg_t", "const mp_arg_t", "mp_arg_t"])
def test_generator_reads_a_table_however_declared(decl):
    table = f"""    {decl} allowed_args[] = {{
        {{ MP_QSTR_freq, MP_ARG_INT, {{.u_int = -1}} }},
    }};"""
    u = _unit(("extmod/x.c", PARSE % table))
    out = gen_api.Extractor([u]).kw_parse(u, "helper")
    assert out["kwargs"] == "parsed" and [a["name"] for a in out["args"]] == ["freq"]
    assert out["args_source"] == "extmod/x.c:3" and out["args_fun"] == "helper"


def test_generator_never_borrows_another_units_table():
    # No table in the helper's unit: another unit's file-scope static table and another
    # function's local table (same name, same unit) are not visible to it.
    u = _unit(("extmod/x.c", PARSE % "" + OTHER_FUNCTION))
    v = _unit(("ports/esp32/y.c", FILE_TABLE))
    ex = gen_api.Extractor([u, v])
    out = ex.kw_parse(u, "helper")
    assert out["kwargs"] == "unknown" and "allowed_args" in out["args_note"], out
    assert "args" not in out and "args_source" not in out
    assert any("helper passes mp_arg_parse_all the table 'allowed_args'" in n for n in ex.notes)
    # The same file-scope table in the helper's own unit (an INCLUDEFILE's part of it) is.
    w = _unit(("extmod/x.c", PARSE % "" + OTHER_FUNCTION), ("ports/esp32/x.c", FILE_TABLE))
    out = gen_api.Extractor([w]).kw_parse(w, "helper")
    assert [a["name"] for a in out["args"]] == ["label"]
    assert out["args_source"].startswith("ports/esp32/x.c:")


MPIRQ = """
const mp_arg_t mp_irq_init_args[] = {
    { MP_QSTR_handler, MP_ARG_OBJ, {.u_obj = mp_const_none} },
};
"""


def test_generator_takes_an_extern_table_from_another_unit():
    # shared/runtime/mpirq.c: `const mp_arg_t mp_irq_init_args[]`, declared extern in mpirq.h
    use = PARSE.replace("allowed_args", "mp_irq_init_args") % ""
    extern = "extern const mp_arg_t mp_irq_init_args[];\n"
    u = _unit(("extmod/x.c", extern + use))
    out = gen_api.Extractor([u, _unit(("shared/runtime/mpirq.c", MPIRQ))]).kw_parse(u, "helper")
    assert [a["name"] for a in out["args"]] == ["handler"] and out["args_linkage"] == "extern"
    # not without the extern declaration, nor when the table is static
    u = _unit(("extmod/x.c", use))
    out = gen_api.Extractor([u, _unit(("shared/runtime/mpirq.c", MPIRQ))]).kw_parse(u, "helper")
    assert out["kwargs"] == "unknown"
    u = _unit(("extmod/x.c", extern + use))
    static = _unit(("shared/runtime/mpirq.c", "static " + MPIRQ.lstrip()))
    assert gen_api.Extractor([u, static]).kw_parse(u, "helper")["kwargs"] == "unknown"


def test_generator_rejects_a_wrong_source(tmp_path):
    p = subprocess.run(
        [sys.executable, "-m", "tools.twin.gen_api", "--mpy-src", str(tmp_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert p.returncode == 2
    assert "not a MicroPython source tree" in p.stderr


# -- the same checker under MicroPython ---------------------------------------------------------


@pytest.mark.micropython
def test_board_checker_under_micropython():
    script = f"""
import api
api.load({str(api.TABLE)!r})
try:
    api.check("machine", "Pin", "irq", 1, {{"hard": True}})
    print("accepted")
except TypeError as e:
    print("TypeError:", e)
api.check("machine", "Pin", "irq", 0, {{"handler": print, "trigger": 2}})
api.check("machine", "Pin", "irq", 2)
print("handler+trigger ok")
try:
    api.check("machine", "ADC", "read_mv", 0)
except AttributeError as e:
    print("AttributeError:", e)
"""
    out = mpy.run(script, extra_path=[ROOT / "tools" / "twin" / "board"])
    assert out.splitlines() == [
        "TypeError: extra keyword arguments given",
        "handler+trigger ok",
        "AttributeError: 'ADC' object has no attribute 'read_mv'",
    ]
