"""Command line: run the gateway, query its database, report against a plan, send commands.

    python -m tools.gateway run --registry fleet.csv --db efd.db --udp 127.0.0.1:47000
    python -m tools.gateway query alarms --db efd.db
    python -m tools.gateway report --db efd.db --plan tools/gateway/data/target_plan_2020.csv
    python -m tools.gateway migrate --db postgresql://efd@db.example:5432/efd
    python -m tools.gateway command --mqtt 127.0.0.1:1883 --device 100001 reset --channel all

User mistakes (a missing file, a bad address, an unknown table) and a gateway that cannot start
(a busy port, a database it cannot open) print one line and exit 2, never a traceback. Device
ids are decimal or hex (0xBEEF), as in every tool.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
from pathlib import Path

from protocol.host import parse_settings
from tools.gateway import query as Q
from tools.gateway.db import mask
from tools.gateway.registry import (
    PLAN_2020,
    RegistryError,
    load_plan,
    load_registry,
    parse_device_id,
)

EXIT_USAGE = 2


class UsageError(Exception):
    pass


def host_port(text: str, default_host: str = "127.0.0.1") -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep:
        host, port = default_host, text
    try:
        p = int(port)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected HOST:PORT") from None
    if not 0 <= p <= 65535:
        raise argparse.ArgumentTypeError(f"{text!r}: port out of range")
    return host or default_host, p


def serial_spec(text: str) -> tuple[str, int]:
    port, sep, baud = text.partition("@")
    if not sep:
        return port, 115200
    try:
        return port, int(baud)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected PORT or PORT@BAUD") from None


def device_id(text: str) -> int:
    """argparse type: a device id, decimal or hex (0xBEEF), like the registry and every tool."""
    try:
        return parse_device_id(text)
    except RegistryError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def id_list(text: str) -> list[int]:
    out: list[int] = []
    try:
        for part in text.split(","):
            a, sep, b = part.partition("-")
            if sep:
                out.extend(range(int(a, 0), int(b, 0) + 1))
            elif part.strip():
                out.append(int(part, 0))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected ids like 1,2,5-9") from None
    return out


def _secret(args) -> bytes | None:
    if getattr(args, "secret_file", None):
        try:
            return Path(args.secret_file).read_bytes().strip()
        except OSError as e:
            raise UsageError(f"{args.secret_file}: {e.strerror}") from None
    env = os.environ.get("EFD_FLEET_SECRET")
    return env.encode() if env else None


def add_mqtt_auth(p: argparse.ArgumentParser) -> None:
    """--mqtt-user / --mqtt-password-file (the password is never an argument: it would show in
    ps and shell history)."""
    p.add_argument("--mqtt-user", metavar="USER", help="MQTT user name (or env EFD_MQTT_USER)")
    p.add_argument(
        "--mqtt-password-file",
        metavar="FILE",
        help="file holding the MQTT password (or env EFD_MQTT_PASSWORD_FILE)",
    )


def mqtt_credentials(args) -> tuple[str | None, str | None]:
    """(user, password) from the options or the environment; (None, None) for none."""
    user = getattr(args, "mqtt_user", None) or os.environ.get("EFD_MQTT_USER") or None
    pw_file = (
        getattr(args, "mqtt_password_file", None)
        or os.environ.get("EFD_MQTT_PASSWORD_FILE")
        or None
    )
    if pw_file is None:
        return user, None
    if user is None:
        raise UsageError("an MQTT password file needs a user: --mqtt-user or env EFD_MQTT_USER")
    try:
        password = Path(pw_file).read_text(encoding="utf-8").strip()
    except OSError as e:
        raise UsageError(f"{pw_file}: {e.strerror}") from None
    except UnicodeDecodeError:
        raise UsageError(f"{pw_file}: not a UTF-8 text file") from None
    return user, password


DB_HELP = (
    "the database: a SQLite file, or postgresql://user@host:port/dbname (the password from "
    "PGPASSWORD or ~/.pgpass rather than in the URL, which `ps` shows) (default: %(default)s)"
)


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m tools.gateway",
        description="Detector gateway: ingest (serial, UDP, MQTT), store (SQLite or PostgreSQL), "
        "republish.",
    )
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")

    r = sub.add_parser("run", help="run the gateway service")
    r.add_argument("--registry", required=True, help="fleet registry CSV (device,...,key)")
    r.add_argument(
        "--secret-file", help="fleet secret for keys not in the registry (or env EFD_FLEET_SECRET)"
    )
    r.add_argument("--db", default="efd-gateway.db", metavar="PATH|URL", help=DB_HELP)
    r.add_argument(
        "--name",
        default="",
        help="instance name (default: host-pid); with MQTT it "
        "is the client id, keep it stable across restarts",
    )
    r.add_argument(
        "--udp",
        action="append",
        type=host_port,
        default=[],
        metavar="HOST:PORT",
        help="listen for datagrams (repeatable)",
    )
    r.add_argument("--mqtt", type=host_port, metavar="HOST:PORT", help="MQTT 5 broker")
    add_mqtt_auth(r)
    r.add_argument("--share", metavar="GROUP", help="join shared subscription $share/GROUP/...")
    r.add_argument(
        "--no-mqtt-ingest", action="store_true", help="use MQTT only to republish and for commands"
    )
    r.add_argument("--prefix", default="efd", help="MQTT topic prefix (default: %(default)s)")
    r.add_argument(
        "--serial",
        action="append",
        type=serial_spec,
        default=[],
        metavar="PORT[@BAUD]",
        help="serial port or pyserial URL (repeatable)",
    )
    r.add_argument(
        "--poll",
        type=id_list,
        default=[],
        metavar="IDS",
        help="be the RS-485 polling master for these device ids (e.g. 1-32)",
    )
    r.add_argument("--poll-interval", type=float, default=1.0, help="seconds per bus cycle")
    r.add_argument(
        "--reply-timeout",
        type=float,
        help="seconds to wait for a reply on the "
        "bus (default: 150 ms + a 256-byte frame at the baud rate, SPEC.md section 9)",
    )
    r.add_argument("--flush-interval", type=float, default=0.05, help="batch commit interval s")
    r.add_argument(
        "--command-retry",
        type=float,
        default=2.0,
        metavar="S",
        help="seconds before an unanswered command is retransmitted, doubling each try "
        "(UDP/MQTT; RS-485: every poll cycle) (default: %(default)s)",
    )
    r.add_argument(
        "--command-retry-max",
        type=float,
        default=30.0,
        metavar="S",
        help="longest retransmission timeout (default: %(default)s)",
    )
    r.add_argument(
        "--command-tries",
        type=int,
        default=5,
        metavar="N",
        help="transmissions before a command is given up as `timeout` (default: %(default)s)",
    )
    r.add_argument("--batch", type=int, default=2000, help="rows per batch before a commit")
    r.add_argument(
        "--no-republish-telemetry",
        action="store_true",
        help="republish events/state only (telemetry JSON is the bulk)",
    )
    r.add_argument(
        "--raw-json",
        action="store_true",
        help="republish the wire's integers (0.1 degC, 0.01 A, fault codes, as the frame "
        "carries them) instead of physical units with a `units` field",
    )
    r.add_argument("--duration", type=float, help="stop after this many seconds")
    r.add_argument("--ready-file", help="write a JSON line here once listening")
    r.add_argument("-v", "--verbose", action="store_true", help="debug logging")

    q = sub.add_parser(
        "query",
        help="query the database",
        description="Query the gateway database (opened read-only: safe beside a running "
        "gateway). alarms: channels in alarm, pre-alarm or fault, from events and, labelled "
        "source=telemetry, from authenticated telemetry status bits no event explains. Values "
        "are in physical units (degC, A, mA, fault and status-bit names) with their `units`; "
        "--raw gives the stored wire integers.",
    )
    q.add_argument(
        "what",
        choices=["alarms", "events", "commands", "devices", "offline", "counters", "export"],
        help="what to list: alarms (current state), events, commands (requests and their "
        "outcome), devices, offline (never heard or silent), counters, export TABLE (CSV)",
    )
    q.add_argument("table", nargs="?", help="for export: " + ", ".join(Q.EXPORTS))
    q.add_argument("--db", default="efd-gateway.db", metavar="PATH|URL", help=DB_HELP)
    q.add_argument("--since", help="time: unix s, age (15m, 2h, 7d) or ISO 8601")
    q.add_argument("--device", type=device_id, metavar="ID", help="one device (decimal or 0xHEX)")
    q.add_argument("--kind", help="event kind (alarm, prealarm, fault, ...)")
    q.add_argument(
        "--status", help="commands: queued, sent, done, timeout or abandoned (default: all)"
    )
    q.add_argument("--all", action="store_true", help="alarms: include channels back to normal")
    q.add_argument(
        "--offline-after",
        type=float,
        default=Q.OFFLINE_AFTER_S,
        help="seconds without a frame before a device is offline (default 300)",
    )
    q.add_argument("--limit", type=int, help="at most this many rows (events, commands)")
    q.add_argument(
        "--raw",
        action="store_true",
        help="the stored wire integers (0.1 degC, 0.01 A, fault codes, status bits) instead "
        "of physical units with a `units` column",
    )
    fmt = q.add_mutually_exclusive_group()
    fmt.add_argument("--csv", action="store_true", help="CSV on stdout")
    fmt.add_argument("--json", action="store_true", help="JSON lines on stdout")
    q.add_argument("-o", "--out", help="write to this file instead of stdout")

    rp = sub.add_parser("report", help="installed / online / in-alarm per unit vs a plan")
    rp.add_argument("--db", default="efd-gateway.db", metavar="PATH|URL", help=DB_HELP)
    rp.add_argument("--plan", default=str(PLAN_2020), help="plan CSV (default: the 2020 plan)")
    rp.add_argument(
        "--offline-after",
        type=float,
        default=Q.OFFLINE_AFTER_S,
        help="seconds without an authenticated frame before a device is offline (default 300)",
    )
    rp.add_argument("--csv", action="store_true", help="CSV on stdout")
    rp.add_argument("-o", "--out", help="write to this file instead of stdout")

    mg = sub.add_parser(
        "migrate",
        help="create or upgrade the database schema (the gateway also does it at start)",
        description="Apply the schema migrations this gateway knows and the database lacks "
        "(tools/gateway/migrations/), then (re)create the views; print the current version "
        "and the versions applied. Safe beside running gateways (one schema lock).",
    )
    mg.add_argument("--db", default="efd-gateway.db", metavar="PATH|URL", help=DB_HELP)
    mg.add_argument(
        "--status", action="store_true", help="only print the versions (applied, pending)"
    )

    pr = sub.add_parser(
        "prune",
        help="delete telemetry older than --keep-days (events and commands are kept)",
        description="Telemetry retention. PostgreSQL: drops the day partitions that ended more "
        "than --keep-days ago (instant, whatever their size); SQLite: deletes those rows in "
        "short transactions. Events, alarm state, commands, results, configs and snapshots "
        "are the record and are never pruned. Safe beside running gateways; run it daily "
        "(cron, systemd timer).",
    )
    pr.add_argument("--db", default="efd-gateway.db", metavar="PATH|URL", help=DB_HELP)
    pr.add_argument(
        "--keep-days",
        type=float,
        required=True,
        metavar="DAYS",
        help="keep the telemetry of the last DAYS days",
    )

    c = sub.add_parser("command", help="ask the gateways (over MQTT) to send a command")
    c.add_argument(
        "--mqtt",
        type=host_port,
        required=True,
        metavar="HOST:PORT",
        help="the MQTT broker the gateways use",
    )
    add_mqtt_auth(c)
    c.add_argument(
        "--prefix", default="efd", help="MQTT topic prefix of the gateways (default: %(default)s)"
    )
    c.add_argument(
        "--device", type=device_id, required=True, metavar="ID", help="device id (decimal or 0xHEX)"
    )
    c.add_argument(
        "name",
        choices=[
            "reset",
            "selftest",
            "set_config",
            "time_sync",
            "snapshot",
            "reboot",
            "get_config",
            "link_status",
        ],
        help="the command (SPEC.md 5.9; link_status: the RESULT value is the WiFi RSSI in dBm)",
    )
    c.add_argument("--channel", default="all", help="reset: channel name or 'all'")
    c.add_argument(
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="set_config: a parameter (repeatable)",
    )
    c.add_argument(
        "--snap-id", type=int, default=0, help="snapshot: which one (default 0: the latest)"
    )
    c.add_argument(
        "--timeout",
        type=float,
        default=5.0,
        help="seconds to wait for the broker and for a gateway's answer (default: %(default)s)",
    )
    # Signed update rollout (issue 11): its options and code live in tools/gateway/update.py.
    from tools.gateway import update as update_cli

    update_cli.add_parser(sub)
    return ap


def command_fields(args) -> dict:
    f: dict = {"cmd": args.name}
    if args.name == "reset":
        f["channel"] = args.channel
    elif args.name == "set_config":
        if not args.param:
            raise UsageError("set_config needs at least one --param NAME=VALUE")
        try:
            f["params"] = parse_settings(args.param)
        except ValueError as e:
            raise UsageError(f"--param: {e}") from None
    elif args.name == "time_sync":
        from protocol.host import now

        f["set_time"] = now()
    elif args.name == "snapshot":
        f["snap_id"] = args.snap_id
    return f


def _out(text: str, path: str | None) -> None:
    if path:
        try:
            Path(path).write_text(text if text.endswith("\n") else text + "\n")
        except OSError as e:
            raise UsageError(f"{path}: {e.strerror}") from None
    else:
        sys.stdout.write(text if text.endswith("\n") else text + "\n")


def _open(db: str):
    from tools.gateway.db import DbError, mask, open_db

    try:
        return open_db(db, readonly=True)
    except FileNotFoundError:
        raise UsageError(f"{db}: no such database (run the gateway first, or pass --db)") from None
    except DbError as e:
        raise UsageError(str(e)) from None
    except db_errors() as e:
        raise UsageError(f"{mask(db)}: cannot open the database ({e})") from None


def db_errors() -> tuple[type[BaseException], ...]:
    from tools.gateway.db import db_errors

    return db_errors()


def cmd_prune(args) -> int:
    from tools.gateway import retention
    from tools.gateway.db import DbError, is_url, open_db

    if args.keep_days < 0:
        raise UsageError("--keep-days must be >= 0")
    if not is_url(args.db) and not Path(args.db).exists():
        raise UsageError(f"{args.db}: no such database")
    try:
        db = open_db(args.db)
    except DbError as e:
        raise UsageError(str(e)) from None
    try:
        got = retention.prune(db, args.keep_days)
    except db_errors() as e:
        raise UsageError(f"{mask(args.db)}: not a gateway database ({e})") from None
    finally:
        db.close()
    print(json.dumps({"keep_days": args.keep_days, **got}))
    return 0


def cmd_migrate(args) -> int:
    from tools.gateway import migrations
    from tools.gateway.db import DbError, is_url, mask, open_db
    from tools.gateway.store import prepare

    if args.status and not is_url(args.db) and not Path(args.db).exists():
        raise UsageError(f"{args.db}: no such database")
    if not is_url(args.db) and not Path(args.db).resolve().parent.is_dir():
        raise UsageError(f"{args.db}: directory {Path(args.db).resolve().parent} does not exist")
    try:
        db = open_db(args.db)
    except DbError as e:
        raise UsageError(str(e)) from None
    try:
        done = [] if args.status else prepare(db)
        st = migrations.status(db)
    except migrations.SchemaError as e:
        raise UsageError(f"{mask(args.db)}: {e}") from None
    except db_errors() as e:
        raise UsageError(f"{mask(args.db)}: not a gateway database ({e})") from None
    finally:
        db.close()
    print(f"database: {mask(args.db)} ({db.dialect})")
    print(f"current version: {st['current']}")
    print(f"applied now: {', '.join(map(str, done)) or 'none'}")
    print(f"applied: {', '.join(map(str, st['applied'])) or 'none'}")
    if st["pending"]:
        print(f"pending: {', '.join(map(str, st['pending']))}")
    return 0


def cmd_query(args) -> int:
    db = _open(args.db)
    try:
        since = Q.parse_time(args.since) if args.since else None
        raw = args.raw
        if args.what == "alarms":
            cols, rows = Q.alarms(db, args.all, raw=raw)
        elif args.what == "events":
            cols, rows = Q.events(
                db, since if since is not None else 0.0, args.device, args.kind, args.limit, raw
            )
        elif args.what == "commands":
            cols, rows = Q.commands(
                db, since if since is not None else 0.0, args.device, args.status, args.limit, raw
            )
        elif args.what in ("devices", "offline"):
            cols, rows = Q.devices(db, args.what == "offline", args.offline_after, raw=raw)
        elif args.what == "counters":
            cols, rows = Q.counters(db)
        else:
            if not args.table:
                raise UsageError("export needs a table: " + ", ".join(Q.EXPORTS))
            cols, rows = Q.export(db, args.table, since, raw=raw)
            if not args.json:
                args.csv = True
    except db_errors() as e:
        raise UsageError(f"{mask(args.db)}: not a gateway database ({e})") from None
    finally:
        db.close()
    if args.json:
        text = "\n".join(json.dumps(dict(zip(cols, r, strict=True))) for r in rows)
    elif args.csv:
        text = Q.format_csv(cols, rows)
    else:
        text = Q.format_table(cols, rows)
    _out(text, args.out)
    return 0


def cmd_report(args) -> int:
    plan = load_plan(args.plan)
    db = _open(args.db)
    try:
        cols, rows = Q.report(db, plan, args.offline_after)
    except db_errors() as e:
        raise UsageError(f"{mask(args.db)}: not a gateway database ({e})") from None
    finally:
        db.close()
    _out(Q.format_csv(cols, rows) if args.csv else Q.format_table(cols, rows), args.out)
    return 0


def cmd_run(args) -> int:
    from tools.gateway.server import Options, StartError, serve

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.poll and not args.serial:
        raise UsageError("--poll needs a --serial port (the bus to poll)")
    if args.command_retry <= 0 or args.command_retry_max < args.command_retry:
        raise UsageError("--command-retry must be > 0 and <= --command-retry-max")
    if args.command_tries < 1:
        raise UsageError("--command-tries must be at least 1")
    if not (args.udp or args.mqtt or args.serial):
        raise UsageError("nothing to listen on: give --udp, --mqtt and/or --serial")
    devices = load_registry(args.registry, _secret(args))
    mqtt_user, mqtt_password = mqtt_credentials(args)
    opts = Options(
        db=args.db,
        devices=devices,
        name=args.name,
        udp=args.udp,
        mqtt=args.mqtt,
        mqtt_ingest=not args.no_mqtt_ingest,
        mqtt_user=mqtt_user,
        mqtt_password=mqtt_password,
        share=args.share,
        prefix=args.prefix,
        serial=args.serial,
        poll=args.poll,
        reply_timeout=args.reply_timeout,
        poll_interval=args.poll_interval,
        flush_interval=args.flush_interval,
        command_retry=args.command_retry,
        command_retry_max=args.command_retry_max,
        command_tries=args.command_tries,
        batch=args.batch,
        republish_telemetry=not args.no_republish_telemetry,
        raw_json=args.raw_json,
        duration=args.duration,
        ready_file=args.ready_file,
    )
    try:
        asyncio.run(serve(opts))
    except StartError as e:  # a busy port, a database it cannot open: nothing was started
        raise UsageError(str(e)) from None
    return 0


def cmd_command(args) -> int:
    import threading

    import paho.mqtt.client as mqtt

    fields = command_fields(args)
    user, password = mqtt_credentials(args)
    got: dict = {}
    done = threading.Event()
    subscribed = threading.Event()
    refused: list[str] = []
    reply_topic = f"{args.prefix}/json/{args.device}/command"

    def on_connect(c, u, flags, reason, props):
        if reason.is_failure:
            refused.append(str(reason))
            subscribed.set()
        else:
            c.subscribe(reply_topic, 1)

    def on_subscribe(c, u, mid, reasons, props):
        subscribed.set()

    def on_message(c, u, msg):
        got.update(json.loads(msg.payload))
        done.set()

    c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    c.on_connect, c.on_subscribe, c.on_message = on_connect, on_subscribe, on_message
    if user is not None:
        c.username_pw_set(user, password)
    try:
        c.connect(args.mqtt[0], args.mqtt[1], keepalive=10)
    except OSError as e:
        raise UsageError(f"cannot reach MQTT broker {args.mqtt[0]}:{args.mqtt[1]}: {e}") from None
    c.loop_start()
    try:
        if not subscribed.wait(args.timeout):
            raise UsageError("broker did not confirm the subscription")
        if refused:
            raise UsageError(f"broker refused the connection: {refused[0]}")
        # Requests go under the requester's user name; the broker's ACL lets each operator
        # publish only there, and the gateway stores that name with the command.
        topic = f"{args.prefix}/cmd/{user or 'anonymous'}/{args.device}"
        c.publish(topic, json.dumps(fields).encode(), qos=1)
        if not done.wait(args.timeout):
            raise UsageError(f"no gateway answered within {args.timeout:g} s")
    finally:
        c.disconnect()
        c.loop_stop()
    print(json.dumps(got))
    return 0 if got.get("ok") else 1


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    if args.cmd == "update":  # signed update rollout: tools/gateway/update.py
        from tools.gateway import update as update_cli

        return update_cli.cmd_update(args)
    try:
        return {"run": cmd_run, "query": cmd_query, "report": cmd_report, "command": cmd_command,
                "migrate": cmd_migrate, "prune": cmd_prune}[args.cmd](args)  # fmt: skip
    except (UsageError, RegistryError, Q.QueryError) as e:
        print(f"{ap.prog} {args.cmd}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as e:  # bind failed, port busy, serial port missing ...
        print(f"{ap.prog} {args.cmd}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
