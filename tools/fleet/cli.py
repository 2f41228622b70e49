"""python -m tools.fleet: a fleet of virtual detectors, and the registry it is built from.

    python -m tools.fleet registry --out fleet.csv --secret-file secret   # 1010 from the plan
    python -m tools.fleet run --registry fleet.csv --secret-file secret --udp 127.0.0.1:47000
    python -m tools.fleet run --registry fleet.csv --mqtt 127.0.0.1:1883 --alarm-share 0.2

Progress goes to stderr every --progress seconds, the summary (JSON) to stdout. Exit status 0
when every event was acknowledged, 1 (with the reason on stderr) when some were not, 2 for a
user mistake (one line).

Run it again against the same gateway database as often as you like: virtual detectors boot
with boot count 1 each time, below the counters the database holds; the gateway asks each one to
`resync` (SPEC.md 7.4) and its events are stored once under new counters.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import sys
import time
from pathlib import Path

from tools.fleet import sim, timeline
from tools.gateway import cli as gwcli
from tools.gateway.cli import host_port
from tools.gateway.registry import (
    PLAN_2020,
    RegistryError,
    fleet_from_plan,
    load_plan,
    load_registry,
    write_registry,
)

EXIT_USAGE = 2


class UsageError(Exception):
    pass


def _secret(path: str | None, required: bool) -> bytes | None:
    if path:
        try:
            return Path(path).read_bytes().strip()
        except OSError as e:
            raise UsageError(f"{path}: {e.strerror}") from None
    env = os.environ.get("EFD_FLEET_SECRET")
    if env:
        return env.encode()
    if required:
        raise UsageError("a fleet secret is needed: --secret-file FILE or env EFD_FLEET_SECRET")
    return None


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="python -m tools.fleet",
        description="Virtual detector fleet (real codec, alarms from scenarios) over UDP/MQTT.",
    )
    sub = ap.add_subparsers(dest="cmd", required=True, metavar="COMMAND")
    g = sub.add_parser("registry", help="write a fleet registry CSV from a target plan")
    g.add_argument("--plan", default=str(PLAN_2020), help="plan CSV (default: the 2020 plan)")
    g.add_argument("--out", required=True, help="registry CSV to write")
    g.add_argument("--secret-file", help="fleet secret the keys derive from")
    g.add_argument("--scale", type=float, default=1.0, help="fraction of each unit's target")
    g.add_argument(
        "--first-id",
        type=int,
        default=100001,
        help="device id of the first detector; the rest count up (default: %(default)s)",
    )
    g.add_argument(
        "--no-keys",
        action="store_true",
        help="leave the key column empty (gateways derive keys from the secret)",
    )

    r = sub.add_parser(
        "run",
        help="run the fleet",
        description="Run virtual detectors against a gateway: HELLO, telemetry every "
        "--interval for --duration s, scenario events until acknowledged (at most --drain s "
        "more). Progress on stderr, a JSON summary on stdout; exit 1 with the reason when "
        "events stay unacknowledged.",
    )
    r.add_argument(
        "--registry",
        required=True,
        metavar="CSV",
        help="fleet registry CSV (python -m tools.fleet registry writes one); the gateway "
        "must use the same one",
    )
    r.add_argument("--secret-file", help="fleet secret for keys not in the registry")
    dst = r.add_mutually_exclusive_group(required=True)
    dst.add_argument("--udp", type=host_port, metavar="HOST:PORT", help="gateway UDP address")
    dst.add_argument("--mqtt", type=host_port, metavar="HOST:PORT", help="MQTT broker")
    gwcli.add_mqtt_auth(r)
    r.add_argument(
        "--prefix",
        default="efd",
        help="MQTT topic prefix: uplinks go to PREFIX/up/<device>, downlinks come from "
        "PREFIX/down/<device>; the gateway's --prefix must match (default: %(default)s)",
    )
    r.add_argument("--devices", type=int, help="use only the first N registry devices")
    r.add_argument(
        "--scenario",
        action="append",
        default=[],
        metavar="TOML",
        help="scenario file(s) for alarms (default: tools/fleet/scenarios/*.toml)",
    )
    r.add_argument(
        "--alarm-share",
        type=float,
        default=0.1,
        help="fraction of detectors playing a scenario (default 0.1)",
    )
    r.add_argument("--speed", type=float, default=1.0, help="scenario time speed-up")
    r.add_argument("--interval", type=float, default=10.0, help="telemetry period per detector s")
    r.add_argument("--duration", type=float, default=30.0, help="seconds of telemetry")
    r.add_argument(
        "--drain",
        type=float,
        default=30.0,
        help="seconds to wait afterwards for unacknowledged events",
    )
    r.add_argument("--retry", type=float, default=1.0, help="event retransmission timeout s")
    r.add_argument(
        "--seed",
        type=int,
        default=1,
        help="random seed: which detectors play which scenario and when, telemetry jitter; "
        "the same seed gives the same run (default: %(default)s)",
    )
    r.add_argument("--report", help="write the summary (with every event sent) as JSON here")
    r.add_argument(
        "--progress",
        type=float,
        default=5.0,
        metavar="S",
        help="seconds between progress lines on stderr, 0 for none (default: %(default)s)",
    )
    r.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    return ap


def cmd_registry(args) -> int:
    secret = _secret(args.secret_file, required=True)
    assert secret is not None
    if args.scale <= 0:
        raise UsageError("--scale must be > 0")
    devs = fleet_from_plan(load_plan(args.plan), secret, args.first_id, args.scale)
    try:
        write_registry(args.out, devs, with_keys=not args.no_keys)
    except OSError as e:
        raise UsageError(f"{args.out}: {e.strerror}") from None
    print(f"wrote {len(devs)} devices to {args.out}", file=sys.stderr)
    return 0


def cmd_run(args) -> int:
    from host_sim.scenario import ScenarioError

    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")  # fmt: skip
    for name in ("interval", "duration", "speed", "retry"):
        if getattr(args, name) <= 0:
            raise UsageError(f"--{name} must be > 0")
    if args.progress < 0 or args.drain < 0:
        raise UsageError("--progress and --drain must be >= 0")
    if not 0 <= args.alarm_share <= 1:
        raise UsageError("--alarm-share must be within 0..1")
    devices = list(load_registry(args.registry, _secret(args.secret_file, False)).values())
    if args.devices:
        devices = devices[: args.devices]
    paths = args.scenario or timeline.default_paths()
    try:
        tls = [timeline.load(p) for p in paths] if args.alarm_share > 0 else []
    except ScenarioError as e:
        raise UsageError(str(e)) from None
    except OSError as e:
        raise UsageError(f"{e.filename}: {e.strerror}") from None
    o = sim.FleetOptions(interval=args.interval, duration=args.duration, drain=args.drain,
                         alarm_share=args.alarm_share, speed=args.speed, retry_s=args.retry,
                         seed=args.seed, progress=args.progress)  # fmt: skip
    try:
        summary, reasons = asyncio.run(_run(args, devices, tls, o))
    except ValueError as e:
        raise UsageError(str(e)) from None
    report = json.dumps(summary)
    if args.report:
        Path(args.report).write_text(report + "\n")
    brief = {k: v for k, v in summary.items() if k != "event_log"}
    print(json.dumps(brief))
    if summary["unacked"] == 0:
        return 0
    print(f"python -m tools.fleet run: {summary['unacked']} events not acknowledged after "
          f"--drain {args.drain:g} s:", file=sys.stderr)  # fmt: skip
    for line in reasons:
        print(f"  {line}", file=sys.stderr)
    return 1


def _where(args) -> str:
    if args.udp:
        return f"the gateway at UDP {args.udp[0]}:{args.udp[1]}"
    return f"the gateway via MQTT {args.mqtt[0]}:{args.mqtt[1]} (prefix {args.prefix!r})"


async def _run(args, devices, tls, o: sim.FleetOptions) -> tuple[dict, list[str]]:
    loop = asyncio.get_running_loop()
    tr: sim.UdpTransport | sim.MqttTransport
    if args.udp:
        tr = sim.UdpTransport(*args.udp)
    else:
        try:
            user, password = gwcli.mqtt_credentials(args)
        except gwcli.UsageError as e:
            raise UsageError(str(e)) from None
        tr = sim.MqttTransport(args.mqtt[0], args.mqtt[1], args.prefix,
                               client_id=f"fleet-{os.getpid()}", username=user,
                               password=password)  # fmt: skip
        await tr.connect()
    dets = sim.build(devices, tls, o, time.monotonic())
    fleet = sim.Fleet(dets, tr.send, o)
    if o.progress > 0:
        sim.log.info(
            "%d detectors (%d playing scenarios) -> %s: telemetry every %g s for %g s, then up "
            "to %g s for the last acknowledgements",
            len(dets), len(fleet.active), _where(args), o.interval, o.duration, o.drain,
        )  # fmt: skip
    tr.start(loop, fleet)
    try:
        await fleet.run()
    finally:
        tr.close(loop)
    return fleet.summary(), fleet.unacked_reasons(_where(args))


def main(argv: list[str] | None = None) -> int:
    ap = build_parser()
    args = ap.parse_args(argv)
    try:
        return {"registry": cmd_registry, "run": cmd_run}[args.cmd](args)
    except (UsageError, RegistryError) as e:
        print(f"{ap.prog} {args.cmd}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as e:
        print(f"{ap.prog} {args.cmd}: error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
