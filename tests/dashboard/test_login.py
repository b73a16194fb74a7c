"""Logging in and out: credentials kept for the session, refused ones reported."""

from __future__ import annotations

from playwright.sync_api import Page, expect

from .conftest import login


def test_login_shows_overview_and_logout_returns_to_login(page: Page, snap) -> None:
    expect(page.get_by_role("button", name="Login")).to_be_visible()
    snap(page, "login")
    login(page)
    expect(page.get_by_role("heading", name="Overview")).to_be_visible()
    expect(page.locator("#current-user")).to_have_text("guest")
    # The credentials are kept for the tab, as RabbitMQ's: a reload stays logged in.
    page.reload()
    expect(page.get_by_role("button", name="Log out")).to_be_visible()
    page.get_by_role("button", name="Log out").click()
    expect(page.get_by_role("button", name="Login")).to_be_visible()
    page.reload()
    expect(page.get_by_role("button", name="Login")).to_be_visible()


def test_wrong_password_is_refused(page: Page) -> None:
    page.get_by_label("Username").fill("guest")
    page.get_by_label("Password").fill("not-the-password")
    page.get_by_role("button", name="Login").click()
    expect(page.get_by_role("alert").filter(has_text="Login failed")).to_be_visible()
    expect(page.get_by_role("button", name="Log out")).to_be_hidden()
