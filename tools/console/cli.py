"""`python -m tools.console`: the supervision console (docs/console.md).

    python -m tools.console run --db efd-gateway.db --users console-users.json \
        [--host 127.0.0.1] [--port 8080] [--mqtt HOST:PORT --mqtt-user console \
        --mqtt-password-file FILE] [--secret-file FILE] [--escalate-after 5]
    python -m tools.console adduser NAME --role operator|supervisor|trainee [--unit UNIT] \
        --users console-users.json [--password-file FILE]     # else: a prompt, twice
    python -m tools.console report --db efd-gateway.db [--since 30d] [--by unit|industry]
    python -m tools.console accuracy --db efd-gateway.db --by detector|site|industry|county
    python -m tools.console escalation --db efd-gateway.db --unit "Meilie District" --minutes 3
    python -m tools.console training --db efd-gateway.db     # (re)build the training cases

User mistakes print one `error:` line and exit 2, never a traceback.
"""

from __future__ import annotations

import argparse
import getpass
import logging
import secrets
import sys
from pathlib import Path

from tools.console import cases as C
from tools.console import dbx, training
from tools.console import users as U
from tools.console.commander import CommandError
from tools.gateway import query as Q
from tools.gateway.cli import DB_HELP, UsageError, host_port, mqtt_credentials

EXIT_USAGE = 2


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m tools.console",
        description="Supervision console: alarm cases to closure, accuracy, training (web).",
    )
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run", help="serve the web console")
    r.add_argument("--db", default="efd-gateway.db", metavar="PATH|URL", help=DB_HELP)
    r.add_argument("--users", default="console-users.json", help="users file (adduser makes it)")
    r.add_argument("--host", default="127.0.0.1", help="listen address (default: %(default)s)")
    r.add_argument("--port", type=int, default=8080, help="listen port (default: %(default)s)")
    r.add_argument(
        "--mqtt",
        type=host_port,
        metavar="HOST:PORT",
        help="broker for command requests and escalations (without it: no commands)",
    )
    r.add_argument("--mqtt-user", help="MQTT user (or env EFD_MQTT_USER)")
    r.add_argument("--mqtt-password-file", help="file holding the MQTT password")
    r.add_argument("--prefix", default="efd", help="MQTT topic prefix (default: %(default)s)")
    r.add_argument(
        "--secret-file",
        help="session signing key file (default: random per start: "
        "everyone logs in again after a restart)",
    )
    r.add_argument(
        "--escalate-after",
        type=float,
        default=C.DEFAULT_ESCALATE_S / 60,
        metavar="MIN",
        help="default escalation delay in minutes (per unit: `escalation`) (default: %(default)g)",
    )
    r.add_argument(
        "--sync-interval",
        type=float,
        default=0.5,
        metavar="S",
        help="how often new events become cases (default: %(default)g s)",
    )
    r.add_argument("--https-only", action="store_true", help="session cookie only over HTTPS")
    r.add_argument(
        "--no-auto-snapshot",
        action="store_true",
        help="do not request the waveform when an alarm case opens (with --mqtt)",
    )
    r.add_argument("-v", "--verbose", action="store_true")

    a = sub.add_parser("adduser", help="add or replace a console user (argon2id hash)")
    a.add_argument("name")
    a.add_argument("--role", required=True, choices=U.ROLES)
    a.add_argument("--unit", default="", help="operator bound to one county/bureau")
    a.add_argument("--users", default="console-users.json", help="users file")
    a.add_argument("--password-file", help="read the password from this file (else a prompt)")

    for name, hlp in (
        ("report", "handling figures per unit or industry"),
        ("accuracy", "alarm accuracy per group"),
    ):
        p = sub.add_parser(name, help=hlp)
        p.add_argument("--db", default="efd-gateway.db", metavar="PATH|URL", help=DB_HELP)
        p.add_argument("--since", help="cases opened since (unix s, 15m, 2h, 7d or ISO 8601)")
        p.add_argument("--until", help="... and before")
        p.add_argument("--csv", action="store_true")
        if name == "report":
            p.add_argument("--by", choices=("unit", "industry"), default="unit")
        else:
            p.add_argument("--by", choices=C.GROUPS, default="county")

    e = sub.add_parser("escalation", help="set a unit's escalation delay")
    e.add_argument("--db", default="efd-gateway.db", metavar="PATH|URL", help=DB_HELP)
    e.add_argument("--unit", required=True)
    e.add_argument("--minutes", type=float, required=True)

    t = sub.add_parser("training", help="(re)build the training cases from the scenarios")
    t.add_argument("--db", default="efd-gateway.db", metavar="PATH|URL", help=DB_HELP)
    return ap


def _password(args) -> str:
    if args.password_file:
        try:
            return Path(args.password_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"{args.password_file}: {e}") from None
    if not sys.stdin.isatty():
        raise UsageError("no terminal for the password prompt: use --password-file")
    pw = getpass.getpass(f"password for {args.name}: ")
    if pw != getpass.getpass("again: "):
        raise UsageError("the passwords differ")
    return pw


def cmd_adduser(args) -> int:
    u = U.add_user(args.users, args.name, args.role, _password(args), args.unit)
    print(f"{u.name}: {u.role}{' of ' + u.unit if u.unit else ''} saved in {args.users}")
    return 0


def _period(args) -> tuple[float | None, float | None]:
    try:
        since = Q.parse_time(args.since) if args.since else None
        until = Q.parse_time(args.until) if args.until else None
    except Q.QueryError as e:
        raise UsageError(str(e)) from None
    return since, until


def cmd_report(args) -> int:
    db = dbx.open_db(args.db)
    try:
        since, until = _period(args)
        st = C.CaseStore(db)
        st.sync()
        if args.cmd == "report":
            rows = st.handling(args.by, since, until)
            cols = ["group", "cases", "open", "median_ack", "median_close", "verified", "accuracy"]
            out = [
                (
                    r["label"],
                    r["cases"],
                    r["open"],
                    C.fmt_duration(r["median_ack_s"]),
                    C.fmt_duration(r["median_close_s"]),
                    r["verified"],
                    C.fmt_pct(r["accuracy"]),
                )
                for r in rows
            ]
        else:
            rows = st.accuracy(args.by, since, until)
            cols = [args.by, "alarms", "verified", "real", "nuisance", "sensor_fault", "accuracy"]
            out = [
                (
                    r["label"],
                    r["alarms"],
                    r["verified"],
                    r["real"],
                    r["nuisance"],
                    r["sensor_fault"],
                    C.fmt_pct(r["accuracy"]),
                )
                for r in rows
            ]
    finally:
        db.close()
    print(Q.format_csv(cols, out) if args.csv else Q.format_table(cols, out))
    return 0


def cmd_escalation(args) -> int:
    db = dbx.open_db(args.db)
    try:
        C.CaseStore(db).set_escalate_after(args.unit, args.minutes * 60)
    except C.WorkflowError as e:
        raise UsageError(str(e)) from None
    finally:
        db.close()
    print(f"{args.unit}: escalate after {args.minutes:g} min unacknowledged")
    return 0


def cmd_training(args) -> int:
    db = dbx.open_db(args.db)
    try:
        n = training.generate(db)
    finally:
        db.close()
    print(f"{n} training cases built from {training.SCENARIOS}")
    return 0


def cmd_run(args) -> int:
    import uvicorn

    from tools.console.app import Config, create_app
    from tools.console.commander import Commander, MqttCommander, NoCommander

    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if not 0 < args.port < 65536:
        raise UsageError(f"--port {args.port}: not a port number")
    U.load(args.users)  # readable? (a missing file just means nobody can log in yet)
    if not Path(args.users).exists():
        print(f"warning: {args.users} does not exist: add users with `adduser`", file=sys.stderr)
    secret = secrets.token_urlsafe(32)
    if args.secret_file:
        try:
            secret = Path(args.secret_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError) as e:
            raise UsageError(f"{args.secret_file}: {e}") from None
    dbx.open_db(args.db).close()  # fail early and clearly; the app reopens on its loop
    commander: Commander = NoCommander()
    if args.mqtt:
        user, pw = mqtt_credentials(args)
        try:
            commander = MqttCommander(args.mqtt[0], args.mqtt[1], user, pw, prefix=args.prefix)
        except CommandError as e:
            raise UsageError(str(e)) from None
    cfg = Config(
        db=args.db,
        users=args.users,
        secret_key=secret,
        prefix=args.prefix,
        commander=commander,
        sync_interval=args.sync_interval,
        default_escalate_s=args.escalate_after * 60,
        https_only=args.https_only,
        auto_snapshot=bool(args.mqtt) and not args.no_auto_snapshot,
    )
    app = create_app(cfg)
    try:
        uvicorn.run(
            app, host=args.host, port=args.port, log_level="info" if args.verbose else "warning"
        )
    finally:
        if isinstance(commander, MqttCommander):
            commander.close()
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    fn = {
        "run": cmd_run,
        "adduser": cmd_adduser,
        "report": cmd_report,
        "accuracy": cmd_report,
        "escalation": cmd_escalation,
        "training": cmd_training,
    }[args.cmd]
    try:
        return fn(args)
    except (UsageError, U.UserError, dbx.DatabaseError, training.TrainingError) as e:
        print(f"{ap.prog} {args.cmd}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except dbx.db_errors() as e:
        print(f"{ap.prog} {args.cmd}: error: database: {e}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as e:
        print(f"{ap.prog} {args.cmd}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
