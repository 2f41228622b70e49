"""The console in a real headless browser (Debian's chromium driven by Playwright): log in,
see a fleet-simulator alarm appear on the board without reloading, walk it to closed, check the
accuracy figure, and visit every page. A screenshot of each page is written to
build/console-screenshots/ (docs/console.md shows them).

The whole chain is real: `python -m tools.fleet run` (virtual detectors playing the leak_alarm
scenario) -> UDP -> `python -m tools.gateway run` -> SQLite -> `python -m tools.console run`
(uvicorn) -> chromium."""

from __future__ import annotations

import re
import shutil
import subprocess
import time
import urllib.request

import pytest

from tests.gateway.conftest import ROOT, free_port, start_gateway
from tools.console import users as U

SHOTS = ROOT / "build" / "console-screenshots"
PW = "browser test password"


def chromium() -> str:
    r = subprocess.run([str(ROOT / "scripts" / "chromium.sh"), "path"], capture_output=True,
                       text=True, check=False)  # fmt: skip
    if r.returncode != 0:
        pytest.skip("chromium is not installed (scripts/chromium.sh install, as root)")
    return r.stdout.strip()


def wait_http(url: str, proc, timeout: float = 30) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.p.poll() is not None:
            raise AssertionError("console exited:\n" + proc.text())
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("console did not answer:\n" + proc.text())


def test_browser_walk(tmp_path, procs, fleet_files):
    exe = chromium()
    sync_api = pytest.importorskip("playwright.sync_api")
    if SHOTS.exists():
        shutil.rmtree(SHOTS)
    SHOTS.mkdir(parents=True)
    db = tmp_path / "efd.db"
    udp = free_port(2)  # SOCK_DGRAM
    start_gateway(procs, tmp_path, fleet_files, "gw-b", db, "--udp", f"127.0.0.1:{udp}")
    users = tmp_path / "users.json"
    U.add_user(users, "alice", "operator", PW)
    U.add_user(users, "sam", "supervisor", PW)
    port = free_port()
    args = ["run", "--db", str(db), "--users", str(users), "--port", str(port)]
    con = procs("tools.console", [*args, "--sync-interval", "0.2"], tmp_path / "console.log")
    base = f"http://127.0.0.1:{port}"
    wait_http(base + "/healthz", con)

    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, args=["--no-sandbox"])
        try:
            page = browser.new_page(viewport={"width": 1280, "height": 900})
            page.set_default_timeout(30_000)

            def shot(name: str) -> None:
                page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)

            page.goto(base + "/")
            assert page.url.endswith("/login?next=/")
            shot("01-login")
            page.fill("#username", "alice")
            page.fill("#password", PW)
            page.click("#login")
            page.wait_for_url(base + "/")
            assert page.locator(".case-row").count() == 0
            # The board is open; now the fleet raises alarms (3 detectors, all playing
            # leak_alarm, 6x faster than real time): the row must appear without a reload.
            fleet = procs("tools.fleet", ["run", "--registry", str(fleet_files / "fleet.csv"),
                                          "--secret-file", str(fleet_files / "secret"), "--udp",
                                          f"127.0.0.1:{udp}", "--devices", "3", "--alarm-share",
                                          "1", "--scenario",
                                          str(ROOT / "tools/fleet/scenarios/leak_alarm.toml"),
                                          "--speed", "6", "--interval", "1", "--duration", "12",
                                          "--progress", "0"], tmp_path / "fleet.log")  # fmt: skip
            page.wait_for_selector(".case-row", timeout=45_000)
            url_before = page.url
            assert page.url == url_before  # no navigation: the board updated in place
            row = page.locator(".case-row").first
            assert "alarm · residual" in row.inner_text()
            assert "mA" in row.inner_text()
            shot("02-board")
            row.locator("a").first.click()
            page.wait_for_selector("#do-action")
            case_url = page.url
            assert re.search(r"/cases/\d+$", case_url)
            assert page.locator("svg.chart").count() >= 2
            shot("03-case-new")
            for step in ("acknowledge", "dispatch", "verify", "remove", "close"):
                if step == "verify":
                    page.select_option("#verdict", "real_hazard")
                    page.select_option("#cause", "insulation_ageing")
                    page.fill("#notes", "leakage to earth on the lighting circuit")
                    shot("04-case-verify")
                page.click("#do-action")
                page.wait_for_url(case_url)
            assert "The case is closed." in page.content()
            assert page.locator("#state").inner_text() == "closed"
            shot("05-case-closed")
            page.goto(base + "/fleet?days=all")
            acc = page.locator('td.accuracy[data-unit="Meilie District"]').inner_text()
            assert acc == "100 %"
            shot("06-fleet")
            dev = re.search(r"/detectors/(\d+)", page.content())
            assert dev
            page.goto(base + f"/detectors/{dev.group(1)}")
            page.wait_for_selector("#nuisance")
            shot("07-detector")
            page.goto(base + "/training")
            page.click("#generate")
            page.wait_for_selector("#training-cases a")
            shot("08-training")
            page.locator("#training-cases tr", has_text="terminal temperature").locator("a").click()
            page.select_option("#verdict", "real_hazard")
            page.select_option("#cause", "loose_joint")
            page.select_option("#handling", "repair_connection")
            page.click("#submit-answer")
            page.wait_for_selector("#feedback")
            assert "Score 3 / 3" in page.locator("#feedback").inner_text()
            shot("09-training-case")
            page.click("#logout")
            page.wait_for_url(re.compile(r".*/login$"))
            # A supervisor sees the closed case read-only.
            page.fill("#username", "sam")
            page.fill("#password", PW)
            page.click("#login")
            page.wait_for_url(base + "/")
            page.goto(case_url)
            assert page.locator("#do-action").count() == 0
            shot("10-supervisor-case")
        finally:
            browser.close()
    fleet.wait(60)
    for n in ("01-login", "02-board", "03-case-new", "05-case-closed", "06-fleet"):
        assert (SHOTS / f"{n}.png").stat().st_size > 5000
