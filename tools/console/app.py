"""The supervision console: a Starlette (ASGI) app with server-rendered Jinja2 pages.

Pages (login required everywhere; docs/console.md):
  /                   live alarm board: open cases oldest first, escalation state; the rows
                      refresh without reload (a small fetch of /board/rows every second)
  /cases/{id}         event timeline, SNAPSHOT waveform and telemetry (SVG), workflow actions,
                      reset / snapshot commands linked to the case
  /fleet              plan report per county / bureau (installed vs planned, online, in alarm),
                      handling figures, accuracy per county / industry / detector, nuisance list
  /detectors/{id}     settings (latest CONFIG), versions, telemetry, nuisance rule + apply
  /training...        training cases, answers scored, per-trainee records

Every POST carries the session's CSRF token; a supervisor's POST to anything that changes a
case or a detector is refused with 403; an operator bound to a unit acts on that unit's cases
only. Form input is validated: a mistake is a 400 page with the reason, never a traceback.

Database access runs on the event loop's thread (SQLite connections stay on the thread that
opened them; queries are short); the MQTT round trip of a command runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
from jinja2 import Environment, FileSystemLoader, select_autoescape
from markupsafe import Markup
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.sessions import SessionMiddleware
from starlette.requests import Request
from starlette.responses import (
    HTMLResponse,
    JSONResponse,
    PlainTextResponse,
    RedirectResponse,
    Response,
)
from starlette.routing import Route

from tools.console import cases as C
from tools.console import evidence, nuisance, training
from tools.console import users as U
from tools.console.commander import Commander, CommandError, NoCommander
from tools.console.dbx import Database, db_errors, open_db
from tools.gateway import query as Q
from tools.gateway import registry as R
from tools.gateway import units

log = logging.getLogger("tools.console")
HERE = Path(__file__).resolve().parent
SESSION_MAX_AGE = 8 * 3600
REFRESH_MIN_S = 0.2
PERIODS = {"1": 86400, "7": 7 * 86400, "30": 30 * 86400, "365": 365 * 86400, "all": None}
CASE_COMMANDS = ("reset", "snapshot", "get_config")
MAX_BODY = 64 * 1024
# Password guessing: after LOGIN_FAILS failed logins for one user name (or from one client
# address) within LOGIN_WINDOW_S, further attempts are refused (429) until the oldest failure
# is that old. argon2 already makes each guess cost ~50 ms of CPU; this bounds the guesses to
# 5 per 15 minutes per account (OWASP's authentication cheat sheet: throttle per account, not
# only per address, so a botnet gains nothing), while a person who mistyped waits at most 15 min.
LOGIN_FAILS = 5
LOGIN_WINDOW_S = 15 * 60


@dataclass
class Config:
    db: str
    users: str
    secret_key: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    plan: str | Path = R.PLAN_2020
    prefix: str = "efd"
    commander: Commander = field(default_factory=NoCommander)
    clock: Callable[[], float] = time.time
    sync_interval: float = 0.5  # background sync + escalation (0: only when pages load)
    default_escalate_s: float = C.DEFAULT_ESCALATE_S
    https_only: bool = False
    # Ask the detector for its waveform (SNAPSHOT) as soon as an alarm case opens on a current
    # channel (residual, phase*), so the evidence is there when the operator opens the case.
    auto_snapshot: bool = False


class LoginNeeded(Exception):
    pass


class Ctx:
    """Per-app state: the database (opened on the loop's thread at startup) and the store."""

    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.db: Database | None = None
        self.store: C.CaseStore | None = None
        self.last_refresh = 0.0
        self._users: dict[str, Any] = {}
        self._users_mtime = -1
        self.plan = R.load_plan(cfg.plan)
        self.industries = R.load_industries()
        self.login_fails: dict[str, list[float]] = {}  # "user:<name>" / "addr:<ip>" -> times

    def login_blocked(self, keys: list[str]) -> float:
        """Seconds until a login under these keys may be tried again (0: now)."""
        now = self.cfg.clock()
        wait = 0.0
        for k in keys:
            recent = [t for t in self.login_fails.get(k, []) if now - t < LOGIN_WINDOW_S]
            if recent:
                self.login_fails[k] = recent
            else:
                self.login_fails.pop(k, None)
            if len(recent) >= LOGIN_FAILS:
                wait = max(wait, recent[-LOGIN_FAILS] + LOGIN_WINDOW_S - now)
        return wait

    def login_failed(self, keys: list[str]) -> None:
        now = self.cfg.clock()
        for k in keys:
            self.login_fails.setdefault(k, []).append(now)
        if len(self.login_fails) > 10000:  # bounded memory under a spray of user names
            oldest = sorted(self.login_fails, key=lambda k: self.login_fails[k][-1])
            for k in oldest[: len(oldest) // 2]:
                del self.login_fails[k]

    def users(self) -> dict[str, Any]:
        """The users file, re-read when it changes (mtime)."""
        try:
            mtime = Path(self.cfg.users).stat().st_mtime_ns
        except OSError:
            return {}
        if mtime != self._users_mtime:
            try:
                self._users = U.load(self.cfg.users)
            except U.UserError as e:
                log.error("%s", e)
                self._users = {}
            self._users_mtime = mtime
        return self._users

    def open(self) -> None:
        self.db = open_db(self.cfg.db)
        self.store = C.CaseStore(
            self.db,
            clock=self.cfg.clock,
            publish=self.cfg.commander.publish,
            prefix=self.cfg.prefix,
            default_escalate_s=self.cfg.default_escalate_s,
        )

    def reopen(self) -> None:
        """Drop the connection and open a new one (after a database error)."""
        if self.db is not None:
            with contextlib.suppress(Exception):
                self.db.close()
        try:
            self.open()
        except Exception as e:
            log.error("cannot reopen the database: %s", e)

    def refresh(self, force: bool = False) -> None:
        """Open cases for new events and escalate overdue ones (rate-limited)."""
        assert self.store is not None
        now = time.monotonic()
        if not force and now - self.last_refresh < REFRESH_MIN_S:
            return
        self.last_refresh = now
        if self.store.sync() and self.cfg.auto_snapshot:
            for case_id in self.store.opened:
                self._snapshot(self.store.get(case_id))
        self.store.escalate()

    def _snapshot(self, c: C.Case) -> None:
        """Request the waveform for a new alarm case (in a worker thread; the reply is linked
        to the case back on the loop's thread, where the database connection lives)."""
        if c.kind != "alarm" or not (c.channel == "residual" or c.channel.startswith("phase")):
            return
        fields = {"cmd": "snapshot", "snap_id": 0}
        loop = asyncio.get_running_loop()

        def request() -> dict[str, Any]:
            try:
                return self.cfg.commander.request(c.device, fields)
            except CommandError as e:
                return {"ok": False, "error": str(e)}

        def done(fut: asyncio.Future) -> None:
            reply = fut.result()
            try:
                assert self.store is not None
                self.store.link_command(c.id, "console", c.device, fields, reply.get("request"),
                                        reply)  # fmt: skip
            except Exception:
                log.exception("could not record the snapshot request of case %d", c.id)

        loop.run_in_executor(None, request).add_done_callback(done)


# -- helpers ---------------------------------------------------------------------------------
def _env() -> Environment:
    env = Environment(
        loader=FileSystemLoader(HERE / "templates"),
        autoescape=select_autoescape(["html"]),
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.globals.update(
        fmt_time=C.fmt_time,
        fmt_duration=C.fmt_duration,
        fmt_pct=C.fmt_pct,
        STATE_LABELS=C.STATE_LABELS,
        ACTION_LABELS=C.ACTION_LABELS,
        VERDICTS=C.VERDICTS,
        CAUSES=C.CAUSES,
        HANDLING=training.HANDLING,
    )
    return env


ENV = _env()


def user_of(request: Request) -> U.User | None:
    s = request.session
    if "user" not in s:
        return None
    return U.User(s["user"], s.get("role", ""), s.get("unit", ""))


def need(request: Request, *roles: str) -> U.User:
    """The logged-in user, checked against the users file on every request: a user removed or
    given another role or unit there is logged out at once (the cookie cannot be revoked)."""
    u = user_of(request)
    if u is None:
        raise LoginNeeded()
    rec = ctx(request).users().get(u.name)
    if not isinstance(rec, dict) or (rec.get("role"), rec.get("unit") or "") != (u.role, u.unit):
        request.session.clear()
        raise LoginNeeded()
    if roles and u.role not in roles:
        raise HTTPException(403, f"your role ({u.role}) may not do this")
    return u


def csrf(request: Request) -> str:
    tok = request.session.get("csrf")
    if not tok:
        tok = request.session["csrf"] = secrets.token_urlsafe(24)
    return str(tok)


async def form_of(request: Request) -> dict[str, str]:
    """The POSTed form (bounded), its CSRF token checked."""
    try:
        form = await request.form(max_files=0, max_fields=50, max_part_size=64 * 1024)
    except Exception:  # malformed multipart / too large: a user (or attacker) mistake
        raise HTTPException(400, "malformed form") from None
    data = {k: v for k, v in form.items() if isinstance(v, str)}
    tok = request.session.get("csrf")
    if not tok or not secrets.compare_digest(str(tok), data.get("csrf", "")):
        raise HTTPException(403, "the form's CSRF token is missing or wrong: reload the page")
    return data


def page(request: Request, template: str, status: int = 200, **kw: Any) -> HTMLResponse:
    kw.setdefault("user", user_of(request))
    kw["csrf"] = csrf(request)
    kw["path"] = request.url.path
    return HTMLResponse(ENV.get_template(template).render(**kw), status_code=status)


def ctx(request: Request) -> Ctx:
    c: Ctx = request.app.state.ctx
    return c


def store(request: Request) -> C.CaseStore:
    s = ctx(request).store
    assert s is not None
    return s


def db(request: Request) -> Database:
    d = ctx(request).db
    assert d is not None
    return d


def int_param(text: str, what: str) -> int:
    try:
        v = R.parse_device_id(text) if what == "device" else int(text)
    except (ValueError, R.RegistryError):
        raise HTTPException(404, f"no such {what}: {text!r}") from None
    if not 0 <= v < 2**63:
        raise HTTPException(404, f"no such {what}: {text!r}")
    return v


def period(request: Request) -> tuple[str, float | None]:
    key = request.query_params.get("days", "30")
    if key not in PERIODS:
        key = "30"
    span = PERIODS[key]
    return key, (ctx(request).cfg.clock() - span) if span else None


def may_handle(u: U.User, case: C.Case) -> bool:
    return u.role == "operator" and (not u.unit or u.unit == case.unit)


def industry_label(request: Request, category: str) -> str:
    code = R.industry_of(category)
    zh, en = ctx(request).industries.get(code, ("", ""))
    return f"{code}. {en} / {zh}"


def board_rows(request: Request, u: U.User) -> list[dict[str, Any]]:
    st = store(request)
    now = ctx(request).cfg.clock()
    unit = u.unit if u.role == "operator" else None
    names = device_names(request)
    out = []
    for c in st.open_cases(unit):
        esc, v = st.escalation(c, now)
        out.append(
            dict(
                case=c,
                name=names.get(c.device, ""),
                reading=c.reading(),
                esc=esc,
                esc_v=v,
                age=now - c.opened,
            )
        )
    return out


def device_names(request: Request) -> dict[int, str]:
    return {int(d): n for d, n in db(request).execute("SELECT device, name FROM devices")}


# -- pages -----------------------------------------------------------------------------------
async def login_page(request: Request) -> Response:
    if request.method == "GET":
        return page(request, "login.html", user=None, error="", next=_safe_next(request))
    data = await form_of(request)
    name, pw = data.get("username", "")[:64], data.get("password", "")[:256]
    keys = ["user:" + name.strip().lower()]
    if request.client is not None:
        keys.append("addr:" + request.client.host)
    wait = ctx(request).login_blocked(keys)
    if wait > 0:
        log.warning("login refused for %r: too many failed attempts", name)
        return page(
            request,
            "login.html",
            429,
            user=None,
            error=f"too many failed logins: try again in {max(1, round(wait / 60))} min",
            next=_safe_next(request),
        )
    try:
        u = await anyio.to_thread.run_sync(U.authenticate, ctx(request).cfg.users, name, pw)
    except U.UserError as e:
        log.error("%s", e)
        u = None
    if u is None:
        ctx(request).login_failed(keys)
        return page(
            request,
            "login.html",
            401,
            user=None,
            error="wrong user name or password",
            next=_safe_next(request),
        )
    request.session.clear()  # a new session (and CSRF token) at login
    request.session.update(user=u.name, role=u.role, unit=u.unit, csrf=secrets.token_urlsafe(24))
    home = "/training" if u.role == "trainee" else "/"
    return RedirectResponse(_safe_next(request) or home, status_code=303)


def _safe_next(request: Request) -> str:
    n = request.query_params.get("next", "")
    return n if n.startswith("/") and not n.startswith("//") and "\\" not in n else ""


async def logout(request: Request) -> Response:
    await form_of(request)
    request.session.clear()
    return RedirectResponse("/login", status_code=303)


async def board(request: Request) -> Response:
    u = need(request, "operator", "supervisor")
    ctx(request).refresh()
    return page(request, "board.html", rows=board_rows(request, u))


async def board_fragment(request: Request) -> Response:
    u = need(request, "operator", "supervisor")
    ctx(request).refresh()
    rows = board_rows(request, u)
    html = ENV.get_template("board_rows.html").render(rows=rows)
    return HTMLResponse(html, headers={"X-Open-Cases": str(len(rows)), "Cache-Control": "no-store"})


async def board_json(request: Request) -> Response:
    u = need(request, "operator", "supervisor")
    ctx(request).refresh()
    return JSONResponse(
        [
            dict(
                case=r["case"].id,
                device=r["case"].device,
                channel=r["case"].channel,
                kind=r["case"].kind,
                state=r["case"].state,
                opened=r["case"].opened,
                escalation=r["esc"],
                reading=r["reading"],
            )
            for r in board_rows(request, u)
        ]
    )


def _case_view(request: Request, u: U.User, case_id: int, error: str = "", status: int = 200):
    st = store(request)
    try:
        c = st.get(case_id)
    except C.NotFound:
        raise HTTPException(404, f"no case {case_id}") from None
    if u.role == "operator" and u.unit and u.unit != c.unit:
        raise HTTPException(403, "this case belongs to another unit")
    d = db(request)
    dev = d.execute("SELECT name, fw FROM devices WHERE device = ?", (c.device,)).fetchone()
    ev = evidence.from_store(d, c.device, c.opened)
    set_ma = nuisance.set_value(d, c.device) or nuisance.DEFAULT_SET_MA
    p = c.physical()
    set_c = p.get("threshold") if p.get("units") == "degC" else None
    timeline = [
        dict(
            at=s["at"],
            what=C.STATE_LABELS.get(s["step"], s["step"]),
            actor=s["actor"],
            notes=s["notes"],
            kind="step",
        )
        for s in st.steps(c.id)
    ]
    for e in st.events(c.id):
        txt = (
            f"fault {e['fault']}"
            if "fault" in e
            else f"{e['value']:g} {C.unit_text(e.get('units'))} "
            f"(threshold {e['threshold']:g} {C.unit_text(e.get('units'))})"
        )
        timeline.append(
            dict(
                at=e["rx"],
                what=f"event: {e['kind']} on {e['channel']}",
                actor="detector",
                notes=txt,
                kind="event",
            )
        )
    timeline.sort(key=lambda x: (x["at"], x["kind"] != "event"))
    nxt = next((a for a, (need_, _to) in C.ACTIONS.items() if need_ == c.state), None)
    assess = (
        nuisance.assess_device(d, c.device, ctx(request).cfg.clock())
        if c.channel == "residual"
        else None
    )
    return page(
        request,
        "case.html",
        status,
        case=c,
        name=dev[0] if dev else "",
        fw=dev[1] if dev else "",
        industry=industry_label(request, c.category),
        reading=c.reading(),
        esc=st.escalation(c),
        escalate_after=st.escalate_after(c.unit),
        timeline=timeline,
        charts=[Markup(s) for s in evidence.render(ev, set_ma=set_ma, set_c=set_c)],
        next_action=nxt,
        can_act=may_handle(u, c),
        commands=st.commands(c.id),
        case_commands=CASE_COMMANDS,
        assess=assess,
        error=error,
    )


async def case_page(request: Request) -> Response:
    u = need(request, "operator", "supervisor")
    ctx(request).refresh()
    return _case_view(request, u, int_param(request.path_params["case_id"], "case"))


async def _handled_case(request: Request) -> tuple[Any, int, dict[str, str], Any, Any]:
    """For a workflow POST: (user, case id, form, case store, case), once the user may act on
    that case (an operator of its unit; a supervisor is read-only: 403; no such case: 404)."""
    u = need(request, "operator", "supervisor")
    case_id = int_param(request.path_params["case_id"], "case")
    data = await form_of(request)
    if u.role != "operator":
        raise HTTPException(403, "supervisors have read-only access")
    st = store(request)
    try:
        c = st.get(case_id)
    except C.NotFound:
        raise HTTPException(404, f"no case {case_id}") from None
    if not may_handle(u, c):
        raise HTTPException(403, "this case belongs to another unit")
    return u, case_id, data, st, c


async def case_action(request: Request) -> Response:
    u, case_id, data, st, _c = await _handled_case(request)
    try:
        st.act(
            case_id,
            data.get("action", ""),
            u.name,
            notes=data.get("notes", ""),
            verdict=data.get("verdict") or None,
            cause=data.get("cause") or None,
        )
    except C.WorkflowError as e:
        return _case_view(request, u, case_id, error=str(e), status=400)
    return RedirectResponse(f"/cases/{case_id}", status_code=303)


async def case_command(request: Request) -> Response:
    u, case_id, data, _st, c = await _handled_case(request)
    cmd = data.get("cmd", "")
    if cmd not in CASE_COMMANDS:
        return _case_view(request, u, case_id, error=f"unknown command {cmd!r}", status=400)
    fields: dict[str, Any] = {"cmd": cmd}
    if cmd == "reset":
        fields["channel"] = c.channel if data.get("scope") != "all" else "all"
    elif cmd == "snapshot":
        fields["snap_id"] = 0
    return await _send(request, u, c.device, fields, case_id, f"/cases/{case_id}")


async def _send(
    request: Request, u: U.User, device: int, fields: dict[str, Any], case_id: int | None, back: str
) -> Response:
    commander = ctx(request).cfg.commander
    try:
        reply = await anyio.to_thread.run_sync(commander.request, device, fields)
    except CommandError as e:
        reply = {"ok": False, "error": str(e)}
    if case_id is not None:
        store(request).link_command(case_id, u.name, device, fields, reply.get("request"), reply)
    if not reply.get("ok"):
        msg = f"{fields['cmd']} not sent: {reply.get('error', 'refused')}"
        if case_id is not None:
            return _case_view(request, u, case_id, error=msg, status=502)
        return _detector_view(request, u, device, error=msg, status=502)
    return RedirectResponse(back, status_code=303)


async def fleet(request: Request) -> Response:
    need(request, "operator", "supervisor")
    ctx(request).refresh()
    days, since = period(request)
    d = db(request)
    st = store(request)
    cols, rows = Q.report(d, ctx(request).plan)
    handling = {h["key"]: h for h in st.handling("unit", since)}
    acc_unit = {a["key"]: a for a in st.accuracy("county", since)}
    report = []
    for r in rows:
        rec = dict(zip(cols, r, strict=False))
        h = handling.get(rec["unit"], {})
        a = acc_unit.get(rec["unit"], {})
        rec.update(
            open=h.get("open", 0),
            median_ack=h.get("median_ack_s"),
            median_close=h.get("median_close_s"),
            accuracy=a.get("accuracy"),
            verified=a.get("verified", 0),
        )
        report.append(rec)
    tot = report[-1] if report and report[-1]["unit"] == "TOTAL" else None
    if tot is not None:
        (h,) = st.handling("all", since) or [{}]
        tot.update(open=h.get("open", 0), median_ack=h.get("median_ack_s"),
                   median_close=h.get("median_close_s"), verified=h.get("verified", 0),
                   accuracy=h.get("accuracy"))  # fmt: skip
    return page(
        request,
        "fleet.html",
        days=days,
        periods=list(PERIODS),
        report=report,
        by_industry=_all_industries(request, st.handling("industry", since)),
        acc_industry={a["key"]: a for a in st.accuracy("industry", since)},
        acc_detector=st.accuracy("detector", since)[:200],
        names=device_names(request),
        prone=nuisance.prone_devices(d, ctx(request).cfg.clock()),
    )


def _all_industries(request: Request, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every one of the city's 10 categories, those without cases with zeros."""
    have = {r["key"]: r for r in rows}
    out = []
    for code, (zh, en) in sorted(ctx(request).industries.items()):
        out.append(have.get(code) or dict(key=code, label=f"{code}. {en} / {zh}", cases=0,
                                          open=0, median_ack_s=None, median_close_s=None,
                                          verified=0, accuracy=None))  # fmt: skip
    return out


def _detector_view(
    request: Request, u: U.User, device: int, error: str = "", status: int = 200, notice: str = ""
) -> Response:
    d = db(request)
    row = d.execute(
        "SELECT device, name, district, category, site, first_seen, last_seen, transport, "
        "address, fw, boot_count FROM devices WHERE device = ?",
        (device,),
    ).fetchone()
    if row is None:
        raise HTTPException(404, f"no detector {device}")
    info = dict(
        zip(
            (
                "device",
                "name",
                "district",
                "category",
                "site",
                "first_seen",
                "last_seen",
                "transport",
                "address",
                "fw",
                "boot_count",
            ),
            row,
            strict=True,
        )
    )
    cfg = d.execute(
        "SELECT rx, config_hash, params FROM configs WHERE device = ? ORDER BY rx DESC, id DESC "
        "LIMIT 1",
        (device,),
    ).fetchone()
    params: list[tuple[str, Any, str]] = []
    cfg_at = None
    if cfg is not None:
        import json

        try:
            plist = json.loads(cfg[2])
            u_of = units.config_units(plist)
            params = [(str(n), v, u_of.get(str(n), "")) for n, v in plist]
        except (ValueError, TypeError):
            params = []
        cfg_at = cfg[0]
    now = ctx(request).cfg.clock()
    last = d.execute("SELECT MAX(rx) FROM telemetry WHERE device = ?", (device,)).fetchone()
    at = float(last[0]) if last and last[0] is not None else now
    ev = evidence.from_store(d, device, at)
    set_ma = nuisance.set_value(d, device) or nuisance.DEFAULT_SET_MA
    charts_ = [Markup(s) for s in evidence.render(ev, set_ma=set_ma, ref="latest report")]
    st = store(request)
    dev_cases = [c for c in st.cases(limit=500) if c.device == device][:20]
    return page(
        request,
        "detector.html",
        status,
        info=info,
        industry=industry_label(request, info["category"]),
        params=params,
        cfg_at=cfg_at,
        charts=charts_,
        assess=nuisance.assess_device(d, device, now),
        cases=dev_cases,
        can_apply=u.role == "operator" and (not u.unit or u.unit == info["district"]),
        error=error,
        notice=notice,
    )


async def detector_page(request: Request) -> Response:
    u = need(request, "operator", "supervisor")
    return _detector_view(request, u, int_param(request.path_params["device"], "device"))


async def apply_set_value(request: Request) -> Response:
    """Apply the nuisance rule's recommended set value with an authenticated set_config."""
    u = need(request, "operator", "supervisor")
    device = int_param(request.path_params["device"], "device")
    data = await form_of(request)
    if u.role != "operator":
        raise HTTPException(403, "supervisors have read-only access")
    d = db(request)
    row = d.execute("SELECT district FROM devices WHERE device = ?", (device,)).fetchone()
    if row is None:
        raise HTTPException(404, f"no detector {device}")
    if u.unit and u.unit != row[0]:
        raise HTTPException(403, "this detector belongs to another unit")
    a = nuisance.assess_device(d, device, ctx(request).cfg.clock())
    try:
        value = int(data.get("leak_set_ma", ""))
    except ValueError:
        return _detector_view(
            request, u, device, error="the set value must be a whole number of mA", status=400
        )
    if not a.prone or value != a.recommended_ma:
        return _detector_view(
            request,
            u,
            device,
            status=409,
            error="the recommendation changed (or there is none): reload",
        )
    case_id = None
    if data.get("case"):
        case_id = int_param(data["case"], "case")
        try:
            if store(request).get(case_id).device != device:
                raise HTTPException(400, "that case is not this detector's")
        except C.NotFound:
            raise HTTPException(404, f"no case {case_id}") from None
    fields = {"cmd": "set_config", "params": [["leak_set_ma", value]]}
    back = f"/cases/{case_id}" if case_id is not None else f"/detectors/{device}"
    return await _send(request, u, device, fields, case_id, back)


async def training_index(request: Request) -> Response:
    u = need(request, "operator", "supervisor", "trainee")
    d = db(request)
    mine = training.records(d, u.name)
    return page(request, "training.html", cases=training.cases(d), record=mine[0] if mine else None)


async def training_generate(request: Request) -> Response:
    need(request, "operator")
    await form_of(request)
    try:
        training.generate(db(request), now=ctx(request).cfg.clock())
    except training.TrainingError as e:
        raise HTTPException(500, f"training scenarios: {e}") from None
    return RedirectResponse("/training", status_code=303)


async def training_case(request: Request) -> Response:
    u = need(request, "operator", "supervisor", "trainee")
    return _training_view(request, u, int_param(request.path_params["case_id"], "case"))


def _training_view(
    request: Request,
    u: U.User,
    case_id: int,
    feedback: Any = None,
    error: str = "",
    status: int = 200,
) -> Response:
    try:
        tc = training.case(db(request), case_id)
    except LookupError:
        raise HTTPException(404, f"no training case {case_id}") from None
    ev = tc["evidence"]
    charts_ = [
        Markup(s) for s in evidence.render(ev, set_ma=ev.get("set_ma"), set_c=ev.get("set_c"))
    ]
    return page(
        request, "training_case.html", status, tc=tc, charts=charts_, feedback=feedback, error=error
    )


async def training_answer(request: Request) -> Response:
    u = need(request, "operator", "trainee", "supervisor")
    case_id = int_param(request.path_params["case_id"], "case")
    data = await form_of(request)
    if u.role == "supervisor":
        raise HTTPException(403, "supervisors have read-only access")
    try:
        fb = training.answer(
            db(request),
            u.name,
            case_id,
            data.get("verdict", ""),
            data.get("cause", ""),
            data.get("handling", ""),
            now=ctx(request).cfg.clock(),
        )
    except C.WorkflowError as e:
        return _training_view(request, u, case_id, error=str(e), status=400)
    except LookupError:
        raise HTTPException(404, f"no training case {case_id}") from None
    return _training_view(request, u, case_id, feedback=fb)


async def training_records(request: Request) -> Response:
    u = need(request, "operator", "supervisor", "trainee")
    who = None if u.role == "supervisor" else u.name
    return page(request, "training_records.html", records=training.records(db(request), who))


async def healthz(request: Request) -> Response:
    return JSONResponse({"ok": True})


# -- errors ----------------------------------------------------------------------------------
async def on_http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if request.url.path.endswith((".json", "/rows")):
        return JSONResponse({"error": exc.detail}, status_code=exc.status_code)
    return page(request, "error.html", exc.status_code, code=exc.status_code, message=exc.detail)


async def on_login_needed(request: Request, exc: Exception) -> Response:
    if request.method == "GET" and not request.url.path.endswith((".json", "/rows")):
        nxt = request.url.path
        return RedirectResponse(f"/login?next={nxt}", status_code=303)
    return JSONResponse({"error": "login required"}, status_code=401)


async def on_db_error(request: Request, exc: Exception) -> Response:
    log.error("database error on %s: %s", request.url.path, exc)
    ctx(request).reopen()  # a server restart breaks the connection: the next request retries
    return page(
        request,
        "error.html",
        503,
        code=503,
        message="the database is not available right now; try again",
    )


class BodyLimit:
    """Refuse request bodies above MAX_BODY (413) before anything parses them: forms here are
    a few hundred bytes, and a parser must not be made to buffer megabytes."""

    def __init__(self, app: Any, limit: int = MAX_BODY):
        self.app, self.limit = app, limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        for k, v in scope.get("headers", []):
            if k == b"content-length" and (not v.isdigit() or int(v) > self.limit):
                await PlainTextResponse("request body too large", 413)(scope, receive, send)
                return
        seen = 0

        async def limited() -> Any:
            nonlocal seen
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                if seen > self.limit:
                    raise HTTPException(413, "request body too large")
            return msg

        await self.app(scope, limited, send)


def create_app(cfg: Config) -> Starlette:
    c = Ctx(cfg)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        c.open()
        task = None
        if cfg.sync_interval > 0:
            task = asyncio.get_running_loop().create_task(_background(c, cfg.sync_interval))
        try:
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            if c.db is not None:
                c.db.close()

    routes = [
        Route("/login", login_page, methods=["GET", "POST"]),
        Route("/logout", logout, methods=["POST"]),
        Route("/", board),
        Route("/board/rows", board_fragment),
        Route("/board.json", board_json),
        Route("/cases/{case_id}", case_page),
        Route("/cases/{case_id}/action", case_action, methods=["POST"]),
        Route("/cases/{case_id}/command", case_command, methods=["POST"]),
        Route("/fleet", fleet),
        Route("/detectors/{device}", detector_page),
        Route("/detectors/{device}/set-value", apply_set_value, methods=["POST"]),
        Route("/training", training_index),
        Route("/training/generate", training_generate, methods=["POST"]),
        Route("/training/records", training_records),
        Route("/training/{case_id}", training_case),
        Route("/training/{case_id}/answer", training_answer, methods=["POST"]),
        Route("/healthz", healthz),
    ]
    handlers: dict[Any, Any] = {HTTPException: on_http_error, LoginNeeded: on_login_needed}
    for e in db_errors():
        handlers[e] = on_db_error
    app = Starlette(
        routes=routes,
        middleware=[
            Middleware(BodyLimit),
            Middleware(
                SessionMiddleware,
                secret_key=cfg.secret_key,
                session_cookie="efd_console",
                max_age=SESSION_MAX_AGE,
                same_site="strict",
                https_only=cfg.https_only,
            ),
        ],
        exception_handlers=handlers,
        lifespan=lifespan,
    )
    app.state.ctx = c
    return app


async def _background(c: Ctx, every: float) -> None:
    while True:
        await asyncio.sleep(every)
        try:
            c.refresh(force=True)
        except db_errors() as e:
            log.warning("case sync failed: %s", e)
            c.reopen()
        except Exception:
            log.exception("case sync failed")
