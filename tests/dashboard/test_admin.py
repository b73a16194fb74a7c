"""The Admin tab: users, virtual hosts, permissions, policies and limits made and removed from
the UI, checked in the broker's state."""

from __future__ import annotations

from conftest import BrokerHandle
from playwright.sync_api import Page, expect

from .conftest import goto, open_section, row


def users(broker: BrokerHandle) -> dict[str, list[str]]:
    return {u["name"]: u["tags"] for u in broker.call(broker.admin.list_users)}


def test_user_vhost_permission_and_policy(logged_in: Page, managed_broker: BrokerHandle, unique: str, snap) -> None:
    page = logged_in
    user, vhost, policy = f"{unique}-user", f"{unique}-vhost", f"{unique}-policy"

    # A user, with a tag set by its quick-add button.
    goto(page, "#/users")
    open_section(page, "Add a user")
    add = page.get_by_role("form", name="Add a user")
    add.get_by_label("Username").fill(user)
    add.get_by_label("Password", exact=True).fill("secret")
    add.get_by_label("Password (confirm)").fill("secret")
    add.get_by_role("button", name="monitoring").click()
    add.get_by_role("button", name="Add user").click()
    expect(row(page, user)).to_contain_text("monitoring")
    assert users(managed_broker)[user] == ["monitoring"]

    # A vhost (its maker, guest, gets full permissions on it, as in RabbitMQ): listed, and
    # offered by the vhost chooser at the top.
    goto(page, "#/vhosts")
    open_section(page, "Add a new virtual host")
    add = page.get_by_role("form", name="Add a new virtual host")
    add.get_by_label("Name").fill(vhost)
    add.get_by_label("Description").fill("made by the dashboard test")
    add.get_by_role("button", name="Add virtual host").click()
    expect(row(page, vhost)).to_contain_text("made by the dashboard test")
    assert vhost in managed_broker.call(managed_broker.admin.list_vhosts)
    expect(page.get_by_label("Virtual host").locator(f'option[value="{vhost}"]')).to_have_count(1)

    # The user's permission on it, set and cleared from the user's page.
    page.get_by_role("link", name="Users", exact=True).click()
    page.get_by_role("link", name=user, exact=True).click()
    grant = page.get_by_role("form", name="Set permission")
    grant.get_by_label("Virtual host").select_option(vhost)
    grant.get_by_label("Write regexp").fill("^amq\\.")
    grant.get_by_role("button", name="Set permission").click()
    permission = page.get_by_role("row").filter(has_text=vhost)
    expect(permission).to_contain_text("^amq\\.")
    assert {"user": user, "vhost": vhost, "configure": ".*", "write": "^amq\\.", "read": ".*"} in managed_broker.call(
        managed_broker.admin.list_permissions, vhost
    )
    # Tags changed without touching the password.
    open_section(page, "Update this user")
    update = page.get_by_role("form", name="Update this user")
    update.get_by_label("Tags").fill("management")
    update.get_by_role("button", name="Update user").click()
    expect(page.get_by_text(f"User {user} updated.")).to_be_visible()
    assert users(managed_broker)[user] == ["management"]
    managed_broker.connect(user=user, password="secret", vhost=vhost).close()  # the password still works
    permission.get_by_role("button", name="Clear").click()
    expect(permission).to_be_hidden()
    assert [p for p in managed_broker.call(managed_broker.admin.list_permissions, vhost) if p["user"] == user] == []

    # A policy in the new vhost, then deleted.
    goto(page, "#/policies")
    open_section(page, "Add / update a policy")
    add = page.get_by_role("form", name="Add / update a policy")
    add.get_by_label("Virtual host").select_option(vhost)
    add.get_by_label("Name").fill(policy)
    add.get_by_label("Pattern").fill("^orders\\.")
    add.get_by_label("Apply to").select_option("Queues")
    add.get_by_role("button", name="max-length", exact=True).click()
    add.get_by_label("Definition value 1").fill("1000")
    add.get_by_role("button", name="Add / update policy").click()
    listed = page.get_by_role("row").filter(has_text=policy)
    expect(listed).to_contain_text("max-length: 1000")
    snap(page, "policies")
    [stored] = [p for p in managed_broker.call(managed_broker.admin.list_policies, vhost) if p["name"] == policy]
    assert (stored["pattern"], stored["apply-to"], stored["definition"]) == ("^orders\\.", "queues", {"max-length": 1000})
    page.once("dialog", lambda dialog: dialog.accept())
    listed.get_by_role("button", name=f"Delete policy {policy}").click()
    expect(listed).to_be_hidden()
    assert managed_broker.call(managed_broker.admin.list_policies, vhost) == []

    # Deleting the user and the vhost from their pages.
    goto(page, f"#/users/{user}")
    open_section(page, "Delete this user")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete this user").click()
    expect(page.get_by_role("heading", name="Users", exact=True)).to_be_visible()
    expect(row(page, user)).to_be_hidden()
    assert user not in users(managed_broker)

    goto(page, f"#/vhosts/{vhost}")
    open_section(page, "Delete this vhost")
    page.once("dialog", lambda dialog: dialog.accept())
    page.get_by_role("button", name="Delete this virtual host").click()
    expect(page.get_by_role("heading", name="Virtual Hosts", exact=True)).to_be_visible()
    expect(row(page, vhost)).to_be_hidden()
    assert vhost not in managed_broker.call(managed_broker.admin.list_vhosts)


def test_users_page_lists_and_filters(logged_in: Page, snap) -> None:
    page = logged_in
    goto(page, "#/users")
    expect(row(page, "guest")).to_contain_text("administrator")
    snap(page, "users")
    page.get_by_label("Filter:").fill("no-such-user")
    expect(page.get_by_text("No users.")).to_be_visible()


def test_limits(logged_in: Page, managed_broker: BrokerHandle, unique: str) -> None:
    page = logged_in
    managed_broker.run(managed_broker.admin.add_vhost(unique))
    try:
        goto(page, "#/limits")
        vhost_form = page.get_by_role("form", name="Set / update a virtual host limit")
        vhost_form.get_by_label("Virtual host").select_option(unique)
        vhost_form.get_by_label("Limit").select_option("max-queues")
        vhost_form.get_by_label("Value").fill("7")
        vhost_form.get_by_role("button", name="Set / update limit").click()
        limit = page.get_by_role("row").filter(has_text=unique)
        expect(limit).to_contain_text("max-queues")
        assert managed_broker.call(managed_broker.admin.list_vhost_limits, unique) == [{"vhost": unique, "value": {"max-queues": 7}}]
        limit.get_by_role("button", name="Clear").click()
        expect(limit).to_be_hidden()
        assert managed_broker.call(managed_broker.admin.list_vhost_limits, unique) == []
    finally:
        managed_broker.run(managed_broker.admin.delete_vhost(unique))
