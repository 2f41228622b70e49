"""Scale-out: three gateway instances sharing one PostgreSQL, next to one gateway on SQLite, in
the same run (issue 16), with the 2020 plan's 1010 detectors.

Each configuration gets the same paced UDP telemetry (bench_gateway's frames and pacing: one
frame per datagram, round-robin over the devices). With three instances every detector talks
to one of them (device index mod 3, as a load balancer or the MQTT shared subscription would
spread them). A rate passes when every frame sent was committed (the instances' own
`stored:telemetry` counters, summed) within 10 s of the sender stopping: zero loss. Rates
rise until the first loss; the highest passing rate is the figure. CPU per frame is read from
/proc: the gateway processes, and for PostgreSQL also the server's processes (postmaster and
its backends, WAL writer, checkpointer...), so both configurations count the storage work.
The private server is scripts/postgres.sh's (started in a temporary directory, stopped at the
end); the gateways get the password from PGPASSWORD, not from their command line.

Also measured: bytes per stored telemetry row (table + its index) on each engine, the input of
the capacity plan in docs/gateway.md.
"""

from __future__ import annotations

import contextlib
import json
import multiprocessing as mp
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.bench_gateway import SECRET, _cpu, _sender
from tools.gateway.db import open_db
from tools.gateway.registry import fleet_from_plan, load_plan, write_registry

ROOT = Path(__file__).resolve().parents[1]
POSTGRES_SH = ROOT / "scripts" / "postgres.sh"
# Paced rates, rising; a sweep stops at the first rate with any loss.
RATES = (5_000, 10_000, 20_000, 30_000, 40_000, 50_000, 65_000)
SECONDS = 4.0
INSTANCES = 3


def _free_udp() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    p = int(s.getsockname()[1])
    s.close()
    return p


def _stored(target: str, names: list[str]) -> int:
    try:
        db = open_db(target, connect_timeout=5)
    except Exception:
        return 0
    try:
        marks = ",".join("?" * len(names))
        r = db.execute(
            "SELECT COALESCE(SUM(value), 0) FROM counters WHERE name='stored:telemetry' AND "
            f"gateway IN ({marks})",
            names,
        ).fetchone()
        return int(r[0])
    except Exception:
        return 0
    finally:
        db.close()


def _pg_pids(pgdir: Path) -> list[int]:
    """The server's processes: the postmaster and its children."""
    pid = int((pgdir / "pid").read_text().split()[0])
    kids = []
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                stat = (p / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(stat[1]) == pid:
                kids.append(int(p.name))
    return [pid, *kids]


def _cpu_sum(pids: list[int]) -> dict[int, float]:
    out = {}
    for p in pids:
        with contextlib.suppress(OSError):  # a backend that exited meanwhile
            out[p] = _cpu(p)
    return out


def run_config(
    tmp: Path, target: str, n_inst: int, rate: int, env: dict, pgdir: Path | None, reader: str
):
    names = [f"b{rate}-{i}" for i in range(n_inst)]
    ports = [_free_udp() for _ in names]
    gws = []
    for name, port in zip(names, ports, strict=True):
        ready = tmp / f"ready-{name}"
        argv = [sys.executable, "-m", "tools.gateway", "run", "--registry",
                str(tmp / "fleet.csv"), "--db", target, "--udp", f"127.0.0.1:{port}",
                "--name", name, "--ready-file", str(ready), "--no-republish-telemetry"]  # fmt: skip
        gws.append(subprocess.Popen(argv, cwd=ROOT, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL, env=env))  # fmt: skip
    try:
        t_end = time.monotonic() + 60
        while not all((tmp / f"ready-{n}").exists() for n in names):
            if time.monotonic() > t_end or any(g.poll() is not None for g in gws):
                raise RuntimeError(f"gateways did not start on {target.split('@')[-1]}")
            time.sleep(0.05)
        q: mp.Queue = mp.Queue()
        p = mp.Process(target=_sender, args=(ports, rate, SECONDS, q))
        p.start()
        assert q.get(timeout=120) == "ready"
        gw_cpu0 = _cpu_sum([g.pid for g in gws])
        pg_cpu0 = _cpu_sum(_pg_pids(pgdir)) if pgdir else {}
        sent, send_s = q.get(timeout=120)
        p.join(10)
        t_end = time.monotonic() + 10
        stored = 0
        while time.monotonic() < t_end:
            stored = _stored(reader, names)
            if stored >= sent:
                break
            time.sleep(0.1)
        time.sleep(0.2)
        stored = _stored(reader, names)
        gw_cpu = sum(c - gw_cpu0.get(p, 0.0) for p, c in _cpu_sum([g.pid for g in gws]).items())
        db_cpu = 0.0
        if pgdir:
            db_cpu = sum(c - pg_cpu0.get(p, 0.0) for p, c in _cpu_sum(_pg_pids(pgdir)).items())
    finally:
        for g in gws:
            g.terminate()
        for g in gws:
            g.wait(15)
    return {"rate": rate, "sent": sent, "stored": stored, "send_s": send_s,
            "gw_cpu": gw_cpu, "db_cpu": db_cpu, "achieved": sent / send_s}  # fmt: skip


def _row_bytes(target: str) -> tuple[float, int]:
    """(bytes per telemetry row, rows): table + index, as the engine stores them."""
    db = open_db(target)
    try:
        n = int(db.execute("SELECT COUNT(*) FROM telemetry").fetchone()[0])
        if db.dialect == "postgresql":
            db.execute("VACUUM ANALYZE telemetry")
            # Partitioned by day (migration 2): the parent holds nothing, its partitions do.
            size = int(
                db.execute(
                    "SELECT COALESCE(SUM(pg_total_relation_size(inhrelid)), 0) FROM pg_inherits "
                    "WHERE inhparent = 'telemetry'::regclass"
                ).fetchone()[0]
            ) + int(db.execute("SELECT pg_total_relation_size('telemetry')").fetchone()[0])
        else:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            try:
                size = int(
                    db.execute(
                        "SELECT SUM(pgsize) FROM dbstat WHERE name IN "
                        "('telemetry', 'telemetry_device_rx')"
                    ).fetchone()[0]
                )
            except Exception:  # no dbstat in this SQLite build: the whole file
                ps = db.execute("PRAGMA page_size").fetchone()[0]
                size = int(db.execute("PRAGMA page_count").fetchone()[0]) * int(ps)
        return (size / n if n else 0.0), n
    finally:
        db.close()


def sweep(
    label: str, tmp: Path, target: str, n_inst: int, env: dict, pgdir: Path | None, reader: str
):
    best, runs = None, []
    for rate in RATES:
        r = run_config(tmp, target, n_inst, rate, env, pgdir, reader)
        runs.append(r)
        print(f"[bench] {label}", json.dumps(r), file=sys.stderr)
        if r["stored"] == r["sent"] and r["achieved"] >= 0.97 * rate:
            best = r
        else:
            break
    return best, runs


def run() -> list[dict]:
    devs = fleet_from_plan(load_plan(), SECRET)
    rows: list[dict] = []
    if subprocess.run([str(POSTGRES_SH), "install"], timeout=900).returncode != 0:
        return [{"name": "PostgreSQL not installed and cannot be installed here (not root)",
                 "value": 0, "unit": "skipped"}]  # fmt: skip
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        write_registry(tmp / "fleet.csv", devs)
        # Under /tmp: as root the cluster runs as `postgres`, which must enter the directory.
        pgdir = Path(tempfile.mkdtemp(prefix="efd-pg-bench-", dir="/tmp"))
        try:
            r = subprocess.run([str(POSTGRES_SH), "start", str(pgdir)], capture_output=True,
                               text=True, timeout=300)  # fmt: skip
            if r.returncode != 0:
                raise RuntimeError("postgres did not start: " + r.stderr)
            url = subprocess.run([str(POSTGRES_SH), "url", str(pgdir)], capture_output=True,
                                 text=True, timeout=30, check=True).stdout.strip()  # fmt: skip
            # The gateways' URL carries no password: they read PGPASSWORD (libpq), so it never
            # shows in `ps`.
            userinfo, hostpart = url.split("://", 1)[1].rsplit("@", 1)
            user, password = userinfo.split(":", 1)
            pg_target = f"postgresql://{user}@{hostpart}"
            env = dict(os.environ, PGPASSWORD=password)
            pg_best, pg_runs = sweep("3 x gateway on PostgreSQL", tmp, pg_target, INSTANCES, env,
                                     pgdir, url)  # fmt: skip
            sq_target = str(tmp / "sqlite.db")
            sq_best, sq_runs = sweep("1 x gateway on SQLite", tmp, sq_target, 1, dict(os.environ),
                                     None, sq_target)  # fmt: skip
            pg_bytes, pg_n = _row_bytes(url)
            sq_bytes, sq_n = _row_bytes(sq_target)
        finally:
            subprocess.run([str(POSTGRES_SH), "stop", str(pgdir)], timeout=120, check=False)
            shutil.rmtree(pgdir, ignore_errors=True)
    for label, best, runs in (
        (f"{INSTANCES} gateways on one PostgreSQL", pg_best, pg_runs),
        ("1 gateway on SQLite", sq_best, sq_runs),
    ):
        if best is None:
            rows.append({"name": f"{label}: UDP ingest, zero loss", "value": 0,
                         "unit": "frames/s", "ok": False})  # fmt: skip
        else:
            n = best["stored"]
            rows.append({"name": f"{label}: UDP ingest, 1010 detectors, zero loss (highest "
                                 "paced rate tried)",
                         "value": round(n / best["send_s"]), "unit": "frames/s"})  # fmt: skip
            rows.append({"name": f"{label}: gateway CPU per frame (all instances)",
                         "value": round(best["gw_cpu"] / n * 1e6, 1), "unit": "us"})  # fmt: skip
            if best["db_cpu"]:
                rows.append({"name": f"{label}: PostgreSQL server CPU per frame",
                             "value": round(best["db_cpu"] / n * 1e6, 1),
                             "unit": "us"})  # fmt: skip
            rows.append({"name": f"{label}: total CPU per frame",
                         "value": round((best["gw_cpu"] + best["db_cpu"]) / n * 1e6, 1),
                         "unit": "us"})  # fmt: skip
        for r in runs:
            rows.append({"name": f"{label}: at {r['rate']:,}/s paced, frames lost",
                         "value": r["sent"] - r["stored"], "unit": "frames"})  # fmt: skip
    rows.append({"name": f"PostgreSQL: bytes per telemetry row (table + index, {pg_n:,} rows)",
                 "value": round(pg_bytes, 1), "unit": "bytes"})  # fmt: skip
    rows.append({"name": f"SQLite: bytes per telemetry row (table + index, {sq_n:,} rows)",
                 "value": round(sq_bytes, 1), "unit": "bytes"})  # fmt: skip
    return rows
