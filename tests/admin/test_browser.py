"""The staff back office in a real browser: Debian's chromium driven by Playwright, over
uvicorn, Channels on Redis, Celery workers, the listener and the paper venue.

A support user pauses a follower with one click and a reason; a master trade placed
afterwards is not copied to it, and its copy to another follower appears on the live
positions page without a reload; the kill switch banner shows; the lineage page of the
copied order shows each step. Screenshots go to screenshots/admin/ (not committed).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from django.db import connections
from django_otp.plugins.otp_totp.models import TOTPDevice

from brokers.paper.testing import running_venue
from copytrading.models import CopyInstruction, CopySubscription, FollowerOrder, TradeLink
from tests.asgi import asgi_server
from tests.copytrading.copy_world import build_world
from tests.factories import make_staff, totp_code
from tests.processes import ROOT, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.e2e]

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SHOTS = ROOT / "screenshots" / "admin"
TIMEOUT_MS = 20_000

playwright_sync = pytest.importorskip("playwright.sync_api")
if not Path(CHROMIUM).exists():
    # scripts/test.sh installs it; in CI a missing browser is a failure, not a skip.
    if os.environ.get("CI"):
        raise RuntimeError(f"{CHROMIUM} is missing: scripts/test.sh should have installed it")
    pytest.skip(
        f"{CHROMIUM} is not installed (scripts/test.sh installs it)", allow_module_level=True
    )


class LazyBrowser:
    """One headless chromium for the module, launched on first use.

    Playwright's sync API keeps an event loop running on this thread while it is open, and
    the copy engine's sync gateway refuses to run under a running loop: so the world is
    built (symbols synced through the gateway) before the browser starts.
    """

    def __init__(self) -> None:
        self._manager = None
        self._browser = None

    def get(self):  # type: ignore[no-untyped-def]
        if self._browser is None:
            self._manager = playwright_sync.sync_playwright()
            playwright = self._manager.__enter__()
            self._browser = playwright.chromium.launch(
                executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True
            )
        return self._browser

    def close(self) -> None:
        if self._browser is not None:
            self._browser.close()
            self._manager.__exit__(None, None, None)
            self._browser = self._manager = None


@pytest.fixture(scope="module")
def browser():
    SHOTS.mkdir(parents=True, exist_ok=True)
    lazy = LazyBrowser()
    yield lazy
    lazy.close()


@pytest.fixture
def allow_db_under_playwright(browser, monkeypatch):
    # The test's own database calls are plain synchronous ones, made on this thread while
    # Playwright's loop is running on it: Django would take them for async code. The
    # browser stops before the database is flushed, so that runs without the exemption.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    yield
    # Connections opened while Playwright's loop ran live in that context's storage (asgiref
    # Local): close them here, or the test database cannot be dropped at the end.
    connections.close_all()
    browser.close()


@pytest.fixture(scope="module")
def venue():
    with running_venue(ticks_ms=0) as v:
        yield v


@pytest.fixture
def world(venue):
    w = build_world([venue])
    yield w
    w.stack.close()


def sign_in(browser, server, user, password):  # type: ignore[no-untyped-def]
    context = browser.get().new_context(viewport={"width": 1500, "height": 950})
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    page.goto(f"{server.url}/admin/login/?next=/admin/")
    page.fill("input[name=username]", user.username)
    page.fill("input[name=password]", password)
    # The two-factor step: the code of the staff member's authenticator app.
    device = TOTPDevice.objects.create(user=user, name="phone", confirmed=True)
    page.fill("input[name=otp_token]", totp_code(device))
    page.locator("form").locator("button[type=submit]").click()
    page.wait_for_url(f"{server.url}/admin/")
    return page


def shot(page, name: str) -> None:
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def test_staff_pause_live_positions_kill_switch_and_lineage(
    browser, world, staff_password, allow_db_under_playwright
):
    master = world.master()
    paused_sub = world.follower(master)
    copied_sub = world.follower(master)
    world.start()
    support = make_staff(group="Support")
    operations = make_staff(group="Operations")
    # DEBUG on the test server only so WhiteNoise serves static files from the apps
    # (the admin skin's CSS and the live page's script) without collectstatic; the
    # two-factor login stays on, as in production.
    with asgi_server(DEBUG="true", STAFF_OTP_REQUIRED="true") as server:
        # 1. Support pauses a follower: one click on its row, a reason, confirm.
        page = sign_in(browser, server, support, staff_password)
        shot(page, "dashboard-support")
        page.goto(f"{server.url}/admin/copytrading/copyfollower/")
        page.locator(f'a[href$="/copyfollower/{paused_sub.follower_id}/pause/"]').click()
        page.fill("textarea[name=reason]", "customer asked to stop copying")
        shot(page, "pause-follower-reason")
        page.locator("button[name=confirm]").click()
        page.wait_for_url(f"{server.url}/admin/copytrading/copyfollower/")
        playwright_sync.expect(page.get_by_text("paused (1 subscription(s))")).to_be_visible()
        shot(page, "pause-follower-done")
        assert CopySubscription.objects.get(pk=paused_sub.pk).status == 1
        assert (
            CopySubscription.objects.get(pk=paused_sub.pk).history.first().history_user == support
        )

        # 2. Operations watches live positions of the other follower; the socket is live.
        ops = sign_in(browser, server, operations, staff_password)
        ops.goto(f"{server.url}/admin/ops/positions/follower/{copied_sub.follower_id}/")
        status = ops.locator("#live-status")
        playwright_sync.expect(status).to_have_attribute("data-state", "live")
        assert ops.locator("#live-table tbody tr").count() == 0

        # 3. The master trades: copied to the active follower, not to the paused one.
        opened = world.order(master.account.login, volume=1)
        world.wait_links(copied_sub, "open")
        row = ops.locator("#live-table tbody tr", has_text=f"#{copied_sub.follower_account.login}")
        playwright_sync.expect(row).to_have_count(1)
        playwright_sync.expect(row).to_contain_text(str(opened["position_id"]))
        playwright_sync.expect(row.locator("td.price")).not_to_have_text("")
        shot(ops, "live-positions")
        skipped = wait_for(
            lambda: CopyInstruction.objects.filter(subscription=paused_sub).first(),
            what="the paused follower's decision",
        )
        assert (skipped.status, skipped.reason) == ("skipped", "SUBSCRIPTION_PAUSED")
        assert world.positions(paused_sub.follower_account.login) == []
        assert not TradeLink.objects.filter(subscription=paused_sub, status="open").exists()

        # 4. The kill switch: on, with a reason; the banner shows on every page.
        ops.goto(f"{server.url}/admin/ops/kill-switch/")
        ops.fill("textarea[name=reason]", "venue maintenance")
        ops.locator("#reason-form button[type=submit]").click()
        ops.goto(f"{server.url}/admin/copytrading/copysubscription/")
        banner = ops.locator("#kill-switch-banner")
        playwright_sync.expect(banner).to_be_visible()
        playwright_sync.expect(banner).to_contain_text("venue maintenance")
        shot(ops, "kill-switch-banner")

        # 5. The lineage of the copied order: event, instruction, states, fills, link, fees.
        order = FollowerOrder.objects.get(instruction__subscription=copied_sub, action="open")
        ops.goto(f"{server.url}/admin/ops/lineage/order/{order.pk}/")
        for step, text in [
            ("#step-event", "Position opened"),
            ("#step-instruction", order.client_order_id),
            ("#step-order", "Filled"),
            ("#step-fills", str(order.venue_position_id)),
            ("#step-link", "Open"),
            ("#step-fees", "No fees yet."),
        ]:
            playwright_sync.expect(ops.locator(step)).to_contain_text(text)
        shot(ops, "lineage")
        ops.goto(f"{server.url}/admin/ops/health/")
        playwright_sync.expect(ops.locator("#latency-p50")).not_to_have_text("–")
        shot(ops, "copy-health")
        ops.goto(f"{server.url}/admin/ops/history/")
        playwright_sync.expect(ops.locator("#history-table")).to_contain_text(
            "customer asked to stop copying"
        )
        shot(ops, "history")

        # The live page went stale when the server went away; shown, not hidden.
        live = ops.context.new_page()
        live.goto(f"{server.url}/admin/ops/positions/")
        playwright_sync.expect(live.locator("#live-status")).to_have_attribute("data-state", "live")
        shot(live, "live-positions-overview")
    playwright_sync.expect(live.locator("#live-status")).to_have_attribute("data-state", "stale")
    shot(live, "live-positions-stale")
