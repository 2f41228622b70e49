"""Board figures from the board twin (tools/twin): the ESP32 image on the MicroPython unix port
with the ESP32 models on a virtual clock (tools/twin/board/launch.py DEFAULTS: every model
parameter and its source; the costs marked "estimate" there are estimates here too).

1. Sample-slot budget, from the model parameters alone: per sample instant the burst loop
   (app/hal_esp32.py _burst) does one ticks_us() and four ADC.read_uv(), each
   adc_fixed_us + (adc_read_us + adc_cali_us) * 160 / f, and every 20th instant the link
   service (a ticks_ms() and a UART read: (ticks_call_us + uart_call_us) * 160 / f, a twentieth
   of it per instant); the wait to the next instant is sleep_us, which the twin charges as the
   wait itself (5 us floor), so it is no cost while there is slack. Share = cost / slot
   (500 us at 50 Hz, 417 us at 60 Hz, app/board.py) against an 80 % budget; the read costs of
   the old port (~35 us at 160 MHz, micropython#7495) and of a ~200 us read as what-ifs.
   Checked against the twin: the HAL's own boot measurement of the read cost, and the window
   length of the slow-ADC run.
2. Late instants, sample rate and window length from twin runs (50 and 60 Hz; the firmware's
   240 MHz and 160 MHz pinned; a slow-ADC what-if that must show the sampling fault). The
   twin's stats give only the last window's late count, so the run goes through a small
   wrapper around launch.py that reads the HAL's late_total at the end and keeps the window
   figures apart from the HAL's 16-read cost measurement at boot.
3. Event log on LittleFS on the flash model, per event (append + ack): erases, bytes programmed
   and flash time at the W25Q32JV's typical and maximum datasheet times; the previous in-place
   ring beside it (the measurement of tests/twin/test_evlog_lfs.py).
4. RS-485: POLL -> reply and ACK -> reply latency with the twin's polling master.
5. Twin speed: simulated seconds per wall second on a 600 s scenario (target >= 20x).

Figures are virtual-clock figures (repeatable run to run); only the speed is a wall time.
"""

from __future__ import annotations

import ast
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from app import board
from host_sim.scenario import load
from tests.twin import test_evlog_lfs as evlog_test
from tools.twin import run as tr

ROOT = tr.ROOT
LAUNCH = tr.BOARD / "launch.py"
CONF = ROOT / "tests" / "conformance"
AT_SET = CONF / "gb14287_2_at_set_alarms.toml"
VFD_60HZ = ROOT / "host_sim" / "scenarios" / "vfd_harmonics_60hz.toml"
ALARM_105 = CONF / "gb14287_2_105pct_60s_alarm_within_30s.toml"
LONG = CONF / "gb14287_3_alarm_within_40s_at_set.toml"  # 600 s
BUDGET_PCT = 80  # share of a sample slot the reads may take
READS = 4  # residual + three phase CTs per instant
SERVICE_EVERY = 20  # instants between link services in a burst (hal_esp32 _SERVICE_EVERY)
FAULT_SAMPLING = 5  # efd.events.FAULT_TIMING ("sampling" in efd.names.FAULT_NAMES)
SPEED_TARGET = 20
SLOTS = {50: board.SAMPLE_PERIOD_US_50HZ, 60: board.SAMPLE_PERIOD_US_60HZ}

# Runs launch.py unchanged, with two observers in front of it: window figures (bursts of at
# least 100 residual reads; the HAL's boot measurement is 16) and timeouts of frames the master
# sent before the firmware had booted (on a board nobody hears them). Prints one BENCH line,
# with the HAL's late_total.
WRAPPER = """
import json  # before launch.py: at the end an import would search the flash, on the clock
import sys
LAUNCH = {launch!r}
sys.argv[0] = LAUNCH  # launch.py finds its board folder from argv[0]
sys.path[:] = [LAUNCH.rsplit("/", 1)[0]]
import twin
import machine
W = {{"windows": 0, "samples": 0, "us_sum": 0, "us_max": 0, "us_min": -1, "to_boot": 0}}
_end = machine._burst_end
def burst_end():
    b = machine._burst
    n = b[2]
    if n >= 100:
        length = (b[1] - b[0]) * n // (n - 1)
        W["windows"] += 1
        W["samples"] += n
        W["us_sum"] += length
        if length > W["us_max"]:
            W["us_max"] = length
        if W["us_min"] < 0 or length < W["us_min"]:
            W["us_min"] = length
    _end()
machine._burst_end = burst_end
_stat = twin.stat
def stat(name, n=1):
    if name == "poll_timeouts" and machine.bus.master.sent_end < twin.boot_us:
        W["to_boot"] += 1
    _stat(name, n)
twin.stat = stat
ns = {{"__name__": "__main__"}}
exec(compile(open(LAUNCH).read(), LAUNCH, "exec"), ns)
hal = ns["g"].get("hal")
W["late_total"] = getattr(hal, "late_total", -1)
W["boot_us"] = twin.boot_us
print("BENCH " + json.dumps(W))
"""


def model_params() -> dict[str, Any]:
    """launch.py's DEFAULTS (a MicroPython script with side effects: read, not imported)."""
    for node in ast.parse(LAUNCH.read_text()).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "DEFAULTS" for t in node.targets
        ):
            return ast.literal_eval(node.value)
    raise RuntimeError(f"{LAUNCH}: no DEFAULTS")


def read_cost_us(p: dict[str, Any], mhz: int, adc_read_us: float | None = None) -> float:
    """One ADC.read_uv() at `mhz`: the driver's conversion plus the interpreter and the
    calibration arithmetic, which scale with the clock."""
    read = p["adc_read_us"] if adc_read_us is None else adc_read_us
    return p["adc_fixed_us"] + (read + p["adc_cali_us"]) * 160 / mhz


def instant_cost_us(p: dict[str, Any], mhz: int, adc_read_us: float | None = None) -> float:
    """One sample instant: a ticks_us(), the four reads, a twentieth of a link service."""
    service = (p["ticks_call_us"] + p["uart_call_us"]) * 160 / mhz / SERVICE_EVERY
    return READS * read_cost_us(p, mhz, adc_read_us) + p["ticks_call_us"] * 160 / mhz + service


# -- 1. sample-slot budget -------------------------------------------------------------------------
def slot_budget(p: dict[str, Any]) -> list[dict[str, Any]]:
    cases = [
        ("default", p["adc_read_us"]),
        ("old port #7495", 35 - p["adc_fixed_us"]),
        ("slow read", 200 - p["adc_fixed_us"]),
    ]
    rows = []
    for label, adc_read in cases:
        total_160 = p["adc_fixed_us"] + adc_read
        for hz, slot in SLOTS.items():
            for mhz in (160, 240):
                cost = instant_cost_us(p, mhz, adc_read)
                share = 100 * cost / slot
                default = label == "default"
                row: dict[str, Any] = {
                    "name": f"slot share {hz} Hz {mhz} MHz, read {total_160} us@160 ({label})",
                    "value": round(share, 1),
                    "unit": "% of slot",
                    "target": f"<= {BUDGET_PCT} (fits <= 100)"
                    if default and mhz == 240
                    else "what-if",
                    "cost_us": round(cost, 1),
                    "slot_us": slot,
                    "fits": cost <= slot,
                    "within_budget": share <= BUDGET_PCT,
                    "adc_read_us": adc_read,
                    "mains_hz": hz,
                    "cpu_mhz": mhz,
                }
                if default and mhz == 240:  # the clock the firmware runs the burst at
                    row["ok"] = share <= BUDGET_PCT
                rows.append(row)
    return rows


# -- 2. twin runs ----------------------------------------------------------------------------------
def twin_run(scn_path: Path, opts: tr.Options, work: Path) -> tuple[tr.TwinResult, dict, float]:
    """tr.run through the WRAPPER; returns the result, the wrapper's figures, wall seconds."""
    scn = load(scn_path)
    t0 = time.perf_counter()
    tr.prepare(scn, work, opts)
    wrap = work / "bench_launch.py"
    wrap.write_text(WRAPPER.format(launch=str(LAUNCH)))
    cmd = [tr.micropython(), "-X", f"heapsize={opts.heap_kb}k", str(wrap), str(work / "run.json")]
    p = subprocess.run(cmd, capture_output=True, text=True, timeout=opts.timeout_s, check=False)
    wall = time.perf_counter() - t0
    output = p.stdout + p.stderr
    stats_path = work / "stats.json"
    lines = [ln for ln in p.stdout.splitlines() if ln.startswith("BENCH ")]
    if p.returncode != 0 or not stats_path.exists() or not lines:
        raise RuntimeError(f"the twin failed (exit {p.returncode}):\n{output[-4000:]}")
    res = tr.TwinResult(tr.events(work), json.loads(stats_path.read_text()), work, output)
    return res, json.loads(lines[-1][6:]), wall


def window_figures(label: str, res: tr.TwinResult, w: dict, hz: int, what_if: bool) -> dict:
    s = res.stats
    n = w["samples"]
    faults = [
        e for e in res.events if e.kind == "fault" and e.value == FAULT_SAMPLING
    ]  # FAULT events carry the fault code as their value
    boots = len(s.get("causes", []))
    error = ""
    if boots != 1 or s.get("result") != "end" or not n:
        # The firmware did not sample through the run (e.g. the HAL failed to start): say why.
        errs = [ln for ln in res.output.splitlines() if "Error" in ln or "error" in ln]
        error = errs[-1].strip() if errs else "(nothing printed)"
        print(f"[bench] twin run {label!r}: {boots} boots, {n} instants: {error}", file=sys.stderr)
    return {
        "run": label,
        "mains_hz": hz,
        "cpu_mhz": s.get("cpu_hz_end", 0) // 1_000_000,
        "boots": boots,
        "error": error,
        "result": s.get("result"),
        "hal_read_us": s.get("hal_read_us"),
        "windows": w["windows"],
        "instants": n,
        "late": w["late_total"],  # -1: no HAL at the end of the run
        "late_pct": 100 * w["late_total"] / n if n and w["late_total"] >= 0 else 0.0,
        "rate_hz": n / (w["us_sum"] / 1e6) if w["us_sum"] else 0.0,
        "window_ms": w["us_sum"] / w["windows"] / 1000 if w["windows"] else 0.0,
        "window_ms_max": w["us_max"] / 1000,
        "window_ms_min": w["us_min"] / 1000,
        "sampling_faults": len(faults),
        "what_if": what_if,
    }


def window_rows(f: dict) -> list[dict[str, Any]]:
    label, hz, what_if = f["run"], f["mains_hz"], f["what_if"]
    period = SLOTS[hz]
    rate = 1e6 / period
    win_ms = 200 * period / 1000
    extra = {k: f[k] for k in ("instants", "late", "windows", "boots", "result", "cpu_mhz")}
    healthy = f["boots"] == 1 and f["result"] == "end" and f["instants"] > 0
    slow = label.startswith("slow ADC")
    rows: list[dict[str, Any]] = [
        {
            "name": f"{label}: late instants ({f['late']} / {f['instants']})",
            "value": round(f["late_pct"], 2),
            "unit": "% of instants",
            "target": "> 0 (the plan does not fit)" if slow else "0",
            **extra,
        },
        {
            "name": f"{label}: sampling faults raised",
            "value": f["sampling_faults"],
            "unit": "events",
            "target": ">= 1" if slow else "0",
        },
        {
            "name": f"{label}: achieved sample rate",
            "value": round(f["rate_hz"], 1),
            "unit": "Hz",
            "target": f"{rate:.0f}",
        },
        {
            "name": f"{label}: window length mean",
            "value": round(f["window_ms"], 2),
            "unit": "ms",
            "target": f"{win_ms:g}",
        },
        {
            "name": f"{label}: window length max",
            "value": round(f["window_ms_max"], 2),
            "unit": "ms",
            "target": f"{win_ms:g}",
        },
    ]
    if slow:
        rows[0]["ok"] = healthy and f["late"] > 0
        rows[1]["ok"] = healthy and f["sampling_faults"] >= 1
    elif not what_if:
        rows[0]["ok"] = healthy and f["late"] == 0
        rows[1]["ok"] = healthy and f["sampling_faults"] == 0
        rows[2]["ok"] = abs(f["rate_hz"] - rate) <= 0.005 * rate
        rows[3]["ok"] = abs(f["window_ms"] - win_ms) <= 0.005 * win_ms
        rows[4]["ok"] = f["window_ms_max"] <= 1.01 * win_ms
    if not healthy:  # the firmware did not sample through the run: no figure here holds
        for r in rows:
            r["ok"] = False
            r["error"] = f["error"]
    return rows


# -- 3. event log on LittleFS ----------------------------------------------------------------------
# tests/twin/test_evlog_lfs.py's measurement (its PRELUDE and runner), append and ack apart and
# at the datasheet's typical and maximum times.
EVLOG = """
def new_log(img, worst, n):
    fl = Flash(img, blocks=128, charge=charge, worst=worst)
    flash.mount(fl, "/fl")
    log = EventLog("/fl/events.bin")
    for rid in range(1, 21):  # files created, the first segment started
        log.ack(log_event(log, rid))
    a = [0, 0, 0]
    k = [0, 0, 0]
    top = 0  # the costliest single event (append + ack)
    for i in range(n):
        e, p, us = fl.erases, fl.prog_bytes, fl.us
        rid = log_event(log, 21 + i)
        e2, p2, us2 = fl.erases, fl.prog_bytes, fl.us
        log.ack(rid)
        a[0] += e2 - e; a[1] += p2 - p; a[2] += us2 - us
        k[0] += fl.erases - e2; k[1] += fl.prog_bytes - p2; k[2] += fl.us - us2
        if fl.us - us > top:
            top = fl.us - us
    vfs.umount("/fl")
    return dict(append=[x / n for x in a], ack=[x / n for x in k], top_us=top, v=fl.violations)

def old_ring(img, worst, m):
    fl = Flash(img, blocks=128, charge=charge, worst=worst)
    flash.mount(fl, "/fl")
    f = open("/fl/events.bin", "wb")
    z = bytes(256)
    for i in range((16 + 1024 * 32) // 256):
        f.write(z)
    f.write(z[:16])
    f.close()
    f = open("/fl/events.bin", "r+b")
    rec = bytearray(32)
    a = [0, 0, 0]
    k = [0, 0, 0]
    top = 0
    for i in range(m):
        e, p, us = fl.erases, fl.prog_bytes, fl.us
        f.seek(16 + (i + 1) * 32)
        f.write(rec)
        f.flush()
        e2, p2, us2 = fl.erases, fl.prog_bytes, fl.us
        f.seek(8 * (i & 1))
        f.write(rec[:8])
        f.flush()
        a[0] += e2 - e; a[1] += p2 - p; a[2] += us2 - us
        k[0] += fl.erases - e2; k[1] += fl.prog_bytes - p2; k[2] += fl.us - us2
        if fl.us - us > top:
            top = fl.us - us
    f.close()
    vfs.umount("/fl")
    return dict(append=[x / m for x in a], ack=[x / m for x in k], top_us=top, v=fl.violations)

out = {{}}
for worst in (False, True):
    tag = "max" if worst else "typ"
    out["new_" + tag] = new_log({d!r} + "/new_" + tag + ".bin", worst, {n})
    out["old_" + tag] = old_ring({d!r} + "/old_" + tag + ".bin", worst, {m})
print(json.dumps(out))
"""


def evlog_figures(tmp: Path, n: int = 600, m: int = 50) -> dict[str, Any]:
    return evlog_test.run(EVLOG, timeout=600, d=str(tmp), n=n, m=m)


EVLOG_NAMES = {"old": "previous in-place ring", "new": "append-only log"}


def evlog_per_event(r: dict[str, Any], log: str) -> dict[str, float]:
    """Per event (append + ack) of `log` ("old", "new"), from evlog_figures."""
    typ, mx = r[log + "_typ"], r[log + "_max"]
    return {
        "erases": typ["append"][0] + typ["ack"][0],
        "prog_b": typ["append"][1] + typ["ack"][1],
        "ms_typ": (typ["append"][2] + typ["ack"][2]) / 1000,
        "ms_max": (mx["append"][2] + mx["ack"][2]) / 1000,
        "append_erases": typ["append"][0],
        "ack_erases": typ["ack"][0],
        "append_prog_b": typ["append"][1],
        "ack_prog_b": typ["ack"][1],
        "append_ms_typ": typ["append"][2] / 1000,
        "ack_ms_typ": typ["ack"][2] / 1000,
        "append_ms_max": mx["append"][2] / 1000,
        "ack_ms_max": mx["ack"][2] / 1000,
        "worst_single_event_ms_typ": typ["top_us"] / 1000,
        "worst_single_event_ms_max": mx["top_us"] / 1000,
        "program_violations": typ["v"] + mx["v"],
    }


def evlog_rows(r: dict[str, Any]) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    per = {log: evlog_per_event(r, log) for log in ("old", "new")}
    for log, f in per.items():
        new = log == "new"
        name = EVLOG_NAMES[log]
        rows += [
            {
                "name": f"event log, {name}: erases per event (append + ack)",
                "value": round(f["erases"], 3),
                "unit": "erases",
                "target": "<= 1" if new else "context",
                **({"ok": f["erases"] <= 1} if new else {}),
                **{k: round(v, 3) for k, v in f.items()},
            },
            {
                "name": f"event log, {name}: bytes programmed per event",
                "value": round(f["prog_b"]),
                "unit": "B",
                "target": "<= 1500" if new else "context",
                **({"ok": f["prog_b"] <= 1500} if new else {}),
            },
            {
                "name": f"event log, {name}: flash time per event, typical",
                "value": round(f["ms_typ"], 1),
                "unit": "ms",
            },
            {
                "name": f"event log, {name}: flash time per event, datasheet max",
                "value": round(f["ms_max"], 1),
                "unit": "ms",
            },
        ]
    rows.append(
        {
            "name": "event log: erases per event, previous / append-only",
            "value": round(per["old"]["erases"] / per["new"]["erases"], 1),
            "unit": "x",
            "target": ">= 10",
            "ok": per["old"]["erases"] >= 10 * per["new"]["erases"],
        }
    )
    return rows


# -- 4. RS-485 latency -----------------------------------------------------------------------------
def poll_rows(res: tr.TwinResult, w: dict) -> list[dict[str, Any]]:
    f = tr.figures(res)
    to = f.get("poll_timeouts", 0)
    rows: list[dict[str, Any]] = []
    for key, what in (("reply", "POLL"), ("ack_reply", "ACK")):
        n = f.get(key.replace("reply", "replies"), 0)
        for q, tgt, lim in (
            ("p50", "<= 20 (SPEC 9, SHOULD)" if what == "POLL" else "", 20),
            ("p99", "", 0),
            ("max", "<= 150 (SPEC 9, MUST)", 150),
        ):
            v = f.get(f"{key}_ms_{q}")
            row: dict[str, Any] = {
                "name": f"RS-485 {what} -> reply {q} (n = {n})",
                "value": v if v is not None else "-",
                "unit": "ms",
                "target": tgt,
            }
            if tgt:
                row["ok"] = v is not None and v <= lim
            rows.append(row)
    lat = res.stats.get("reply_latency_us", [])
    if len(lat) > 1:  # the first POLL the board hears waits for its first loop (boot)
        rows.append(
            {
                "name": "RS-485 POLL -> reply max, the first reply after boot left out",
                "value": round(max(lat[1:]) / 1000, 1),
                "unit": "ms",
                "target": "<= 20 (SPEC 9, SHOULD)",
                "ok": max(lat[1:]) <= 20000,
                "first_reply_ms": round(lat[0] / 1000, 1),
            }
        )
    rows += [
        {"name": "RS-485 polls sent (every 300 ms)", "value": f.get("polls", 0), "unit": "polls"},
        {
            "name": "RS-485 POLL replies",
            "value": f.get("replies", 0),
            "unit": "replies",
            "acks": f.get("acks", 0),
            "ack_replies": f.get("ack_replies", 0),
        },
        {
            "name": f"RS-485 timeouts ({w['to_boot']} of frames sent before boot)",
            "value": to,
            "unit": "polls",
            "target": "0 after boot",
            "ok": to - w["to_boot"] == 0 and f.get("replies", 0) > 0,
            "before_boot": w["to_boot"],
            "boot_s": w["boot_us"] / 1e6,
        },
        {
            "name": "RS-485 driver enabled",
            "value": f.get("de_high_pct", 0),
            "unit": "% of time",
        },
    ]
    return rows


# -- the bench -------------------------------------------------------------------------------------
def table(title: str, head: list[str], body: list[list[Any]]) -> None:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:,.0f}" if abs(v) >= 1000 else f"{v:.4g}"
        return str(v)

    cells = [[cell(v) for v in r] for r in body]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(head)]
    print(f"\n{title}")
    print("  ".join(h.rjust(w) for h, w in zip(head, widths, strict=True)))
    for r in cells:
        print("  ".join(v.rjust(w) for v, w in zip(r, widths, strict=True)))


def run() -> list[dict]:
    p = model_params()
    rows = slot_budget(p)
    yn = {True: "yes", False: "NO"}
    table(
        "board twin: sample-slot budget per instant (launch.py DEFAULTS: 4 reads + ticks_us"
        " + 1/20 link service)",
        ["mains Hz", "CPU MHz", "read us@160", "cost us", "slot us", "share %", "fits", "<= 80 %"],
        [
            [
                *(r["mains_hz"], r["cpu_mhz"], r["adc_read_us"] + p["adc_fixed_us"]),
                *(r["cost_us"], r["slot_us"], r["value"], yn[r["fits"]], yn[r["within_budget"]]),
            ]
            for r in rows
        ],
    )

    def pinned160(adc_read_us: int | None = None) -> tr.Options:
        # The clock stays at 160 MHz whatever machine.freq() the firmware asks for.
        return tr.Options(cpu_mhz=160, params={"pin_cpu": True}, adc_read_us=adc_read_us)

    runs = [  # label, scenario, options (image set below), mains Hz, what-if
        ("50 Hz 240 MHz", AT_SET, tr.Options(), 50, False),
        ("50 Hz 160 MHz pinned", AT_SET, pinned160(), 50, True),
        ("60 Hz 240 MHz", VFD_60HZ, tr.Options(), 60, False),
        ("60 Hz 160 MHz pinned", VFD_60HZ, pinned160(), 60, True),
        ("slow ADC (200 us@160) 50 Hz 160 MHz pinned", AT_SET, pinned160(190), 50, True),
    ]
    with tempfile.TemporaryDirectory(prefix="efd-bench-twin-") as d:
        tmp = Path(d)
        image = tr.build_image(tmp / "image")
        figs = []
        for i, (label, path, opts, hz, what_if) in enumerate(runs):
            opts.image = image
            res, w, _ = twin_run(path, opts, tmp / f"run{i}")
            figs.append(window_figures(label, res, w, hz, what_if))
        table(
            "board twin: sampling (virtual clock; windows exclude the HAL's boot read-cost burst)",
            [
                *("run", "MHz", "late / instants", "late %", "rate Hz", "window ms mean / max"),
                *("sampling faults", "HAL read us"),
            ],
            [
                [
                    *(f["run"], f["cpu_mhz"], f"{f['late']} / {f['instants']}", f["late_pct"]),
                    *(f["rate_hz"], f"{f['window_ms']:.2f} / {f['window_ms_max']:.2f}"),
                    *(f["sampling_faults"], f["hal_read_us"]),
                ]
                for f in figs
            ],
        )
        for f in figs:
            rows += window_rows(f)
        # The model checked against the twin: the HAL's boot measurement of one read (16 reads
        # between two ticks_us, integer us) and the stretched window of the slow-ADC run.
        for f, mhz in ((figs[0], 240), (figs[1], 160)):
            model = read_cost_us(p, mhz)
            rows.append(
                {
                    "name": f"ADC read cost at {mhz} MHz: HAL boot measurement on the twin",
                    "value": f["hal_read_us"] if f["hal_read_us"] is not None else "-",
                    "unit": "us",
                    "target": f"model {model:.1f} (+-2)",
                    "ok": f["hal_read_us"] is not None and abs(f["hal_read_us"] - model) <= 2,
                }
            )
        slow = figs[4]
        model_ms = 200 * instant_cost_us(p, 160, 190) / 1000
        rows.append(
            {
                "name": "slow ADC what-if: window length, twin vs 200 x model instant cost",
                "value": round(slow["window_ms"], 2),
                "unit": "ms",
                "target": f"model {model_ms:.1f} (+-1 %)",
                "ok": abs(slow["window_ms"] - model_ms) <= 0.01 * model_ms,
            }
        )

        ev = evlog_figures(tmp)
        table(
            "board twin: event log on LittleFS on the W25Q32JV model, per event (append + ack)",
            [
                *("log", "erases", "programmed B", "flash ms typ", "flash ms max"),
                *("worst event ms typ / max", "program violations"),
            ],
            [
                [EVLOG_NAMES[log]]
                + [f[k] for k in ("erases", "prog_b", "ms_typ", "ms_max")]
                + [f"{f['worst_single_event_ms_typ']:.0f} / {f['worst_single_event_ms_max']:.0f}"]
                + [f["program_violations"]]
                for log in ("old", "new")
                for f in [evlog_per_event(ev, log)]
            ],
        )
        erow = evlog_rows(ev)
        rows += erow

        res, w, _ = twin_run(ALARM_105, tr.Options(image=image, poll_ms=300), tmp / "poll")
        prow = poll_rows(res, w)
        f = tr.figures(res)
        table(
            "board twin: RS-485 latency, polling master every 300 ms (ms)",
            ["frame", "n", "p50", "p99", "max"],
            [
                [what, f.get(k.replace("reply", "replies"), 0)]
                + [f.get(f"{k}_ms_{q}", "-") for q in ("p50", "p99", "max")]
                for k, what in (("reply", "POLL"), ("ack_reply", "ACK"))
            ],
        )
        print(
            f"polls {f.get('polls', 0)}, timeouts {f.get('poll_timeouts', 0)} "
            f"({w['to_boot']} of frames sent before the firmware booted at "
            f"{w['boot_us'] / 1e6:.2f} s of virtual time)"
        )
        rows += prow

        # Speed: the plain tr.run (no wrapper), the image built, everything else included
        # (rendering the inputs, laying out the flash, the deploy onto LittleFS, the run).
        long_scn = load(LONG)
        t0 = time.perf_counter()
        res = tr.run(long_scn, tr.Options(image=image), tmp / "speed")
        wall = time.perf_counter() - t0
        sim_s = long_scn.duration_s
        speed = sim_s / wall
        print(f"\ntwin speed: {sim_s:g} s simulated in {wall:.1f} s wall: {speed:.1f}x")
        rows.append(
            {
                "name": f"twin speed, {LONG.stem} ({sim_s:g} s), all models live",
                "value": round(speed, 1),
                "unit": "x real time",
                "target": f">= {SPEED_TARGET}",
                # ... and the firmware ran the whole scenario (one boot, to the end).
                "ok": speed >= SPEED_TARGET
                and res.stats.get("result") == "end"
                and len(res.stats.get("causes", [])) == 1,
                "wall_s": round(wall, 2),
            }
        )
    return rows
