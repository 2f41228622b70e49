"""Run a host_sim scenario through the board twin: the ESP32 image (main.py -> hal_esp32.py ->
app.run) on the MicroPython unix port, with the twin's `machine`/`esp32`/`time` in front of it.

The host side (this module) renders the scenario to pin voltages, builds the image, writes the
run's configuration, starts `micropython tools/twin/board/launch.py RUN.json`, and reads back
the events (with the board's own virtual time) and the board figures.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

from efd.names import CHANNEL_NAMES, KIND_NAMES
from host_sim.scenario import Scenario
from host_sim.simulate import SimEvent
from tools import fwbuild, provisioning
from tools.twin import api, render

ROOT = Path(__file__).resolve().parents[2]
BOARD = Path(__file__).resolve().parent / "board"
DEVICE = 0x12345678
KEY = bytes(range(32))


def micropython() -> str:
    from tools.virtual_device import micropython as mp

    return mp()


@dataclasses.dataclass
class Options:
    vref_mv: int = 1100  # the chip's ADC reference (ESP32: 1000-1200 mV)
    cpu_mhz: int = 160  # the CPU clock at boot (the generic build's 160 MHz)
    adc_read_us: int | None = None  # interpreter part of one ADC read at 160 MHz (launch.py)
    poll_ms: int = 0  # a polling master on the RS-485 bus every poll_ms (0: no master)
    params: dict[str, Any] = dataclasses.field(default_factory=dict)
    # The twin's own models share the heap with the firmware: the heap budget is not what this
    # measures (tests/firmware runs the firmware alone in 64 KB).
    heap_kb: int = 256
    timeout_s: float = 600.0
    flash: str = "lfs"  # "lfs": LittleFS on the flash model; "posix": a host folder
    # Extra front-panel button presses, (from s, to s): held >= 3 s is the self-test.
    presses: list[tuple[float, float]] = dataclasses.field(default_factory=list)
    image: Path | None = None  # a built image to reuse (build_image()); default: build one


@dataclasses.dataclass
class TwinResult:
    events: list[SimEvent]
    stats: dict[str, Any]
    workdir: Path
    output: str
    launch_s: float = 0.0  # wall time of the twin itself (not the image build or the render)


def build_image(out: Path, hal: Path | None = None, replace: dict[str, Path] | None = None) -> Path:
    """The ESP32 image (its file set: hal_esp32, no hal_sim) compiled for this host's CPU.
    `hal` replaces app/hal_esp32.py, `replace` any library module ({"app/evlog.py": path}):
    tests run earlier versions to show what the twin catches."""
    fwbuild.build("x64", out, board="xtensawin")
    swaps = dict(replace or {})
    if hal is not None:
        swaps["app/hal_esp32.py"] = hal
    for rel, src in swaps.items():
        dst = out / "lib" / rel.replace(".py", ".mpy")
        cmd = [fwbuild.mpy_cross(), "-march=x64", "-s", rel, "-o", str(dst), str(src)]
        subprocess.run(cmd, check=True, capture_output=True)
    return out


def prepare(scn: Scenario, work: Path, opts: Options) -> dict[str, Any]:
    """Render inputs, build and lay out the flash, write RUN.json; returns the run config."""
    work.mkdir(parents=True, exist_ok=True)
    img = opts.image or build_image(work / "image")
    files = work / "files"
    if files.exists():
        shutil.rmtree(files)
    shutil.copytree(img, files)
    for name, text in provisioning.files(DEVICE, KEY.hex()).items():
        (files / name).write_text(text)
    (files / "config.json").write_text(json.dumps(scn.settings))
    render.render(scn, work / "inputs.bin")
    (work / "api.json").write_text(json.dumps(api.for_twin(), separators=(",", ":")))
    params = dict(opts.params)
    params["vref_mv"] = opts.vref_mv
    if opts.adc_read_us is not None:
        params["adc_read_us"] = opts.adc_read_us
    cfg: dict[str, Any] = {
        "analog": str(work / "inputs.bin"),
        "events_out": str(work / "events.txt"),
        "stats_out": str(work / "stats.json"),
        "end_us": round(scn.duration_s * 1e6),
        "cpu_hz": opts.cpu_mhz * 1_000_000,
        "params": params,
        "presses": [[round(a * 1e6), round(b * 1e6)] for a, b in opts.presses],
        "api": str(work / "api.json"),
    }
    if opts.flash == "lfs":
        cfg["flash_image"] = str(work / "flash.img")
        cfg["root"] = "/flash"
        cfg["load_files"] = str(files)
        (work / "flash.img").unlink(missing_ok=True)
    else:
        cfg["root"] = str(files)
    if opts.poll_ms:
        cfg["bus"] = {"baud": 9600, "device": DEVICE, "key": KEY.hex(), "poll_ms": opts.poll_ms}
    (work / "run.json").write_text(json.dumps(cfg, indent=1))
    return cfg


def launch(work: Path, opts: Options) -> tuple[str, int]:
    cmd = [micropython(), "-X", f"heapsize={opts.heap_kb}k", str(BOARD / "launch.py")]
    cmd.append(str(work / "run.json"))
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=opts.timeout_s, check=False)
    return p.stdout + p.stderr, p.returncode


def events(work: Path) -> list[SimEvent]:
    out: list[SimEvent] = []
    path = work / "events.txt"
    if not path.exists():
        return out
    for line in path.read_text().splitlines():
        t_us, kind, ch, value, thr = (int(x) for x in line.split())
        out.append(SimEvent(t_us / 1e6, KIND_NAMES[kind], CHANNEL_NAMES[ch], value, thr))
    return out


def run(scn: Scenario, opts: Options | None = None, workdir: Path | None = None) -> TwinResult:
    opts = opts or Options()
    work = workdir or Path(tempfile.mkdtemp(prefix="efd-twin-"))
    prepare(scn, work, opts)
    t0 = time.perf_counter()
    output, rc = launch(work, opts)
    launch_s = time.perf_counter() - t0
    stats_path = work / "stats.json"
    if rc != 0 or not stats_path.exists():
        raise RuntimeError(f"the twin failed (exit {rc}):\n{output[-4000:]}")
    stats = json.loads(stats_path.read_text())
    return TwinResult(events(work), stats, work, output, launch_s)


def figures(res: TwinResult) -> dict[str, Any]:
    """The board's own figures of a run, in units people read."""
    s = res.stats
    out: dict[str, Any] = {"result": s.get("result"), "boots": len(s.get("causes", []))}
    out["reset_causes"] = s.get("causes", [])
    out["cpu_mhz"] = s.get("cpu_hz_end", 0) // 1_000_000
    if s.get("bursts"):
        out["window_ms"] = round(s["burst_us_sum"] / s["bursts"] / 1000, 2)
        out["window_ms_max"] = round(s["burst_us_max"] / 1000, 2)
        out["sample_rate_hz"] = round(s["burst_samples"] / (s["burst_us_sum"] / 1e6), 1)
    for k in ("hal_late", "hal_late_total", "hal_read_us", "hal_period"):
        if k in s:
            out[k[4:]] = s[k]
    if "wdt_max_gap_us" in s:
        out["loop_ms_max"] = round(s["wdt_max_gap_us"] / 1000, 1)
        out["watchdog_margin_ms"] = round((s["wdt_timeout_us"] - s["wdt_max_gap_us"]) / 1000, 1)
    out["watchdog_resets"] = s.get("wdt_resets", 0)
    fl = s.get("flash")
    if fl:
        out["flash_erases"] = fl.get("erases")
    for key, name in (("reply_latency_us", "reply"), ("ack_reply_latency_us", "ack_reply")):
        lat = sorted(s.get(key, []))
        if lat:
            out[name.replace("reply", "replies")] = len(lat)
            out[name + "_ms_p50"] = round(lat[len(lat) // 2] / 1000, 1)
            out[name + "_ms_p99"] = round(lat[min(len(lat) - 1, int(len(lat) * 0.99))] / 1000, 1)
            out[name + "_ms_max"] = round(lat[-1] / 1000, 1)
    for k in ("polls", "poll_timeouts", "acks", "late_replies", "rx_lost_de_high"):
        if k in s:
            out[k] = s[k]
    if "de_high_us" in s and s.get("now_us"):
        out["de_high_pct"] = round(100 * s["de_high_us"] / s["now_us"], 1)
    return out
