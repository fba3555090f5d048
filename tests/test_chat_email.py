"""Answering from an email: signed links to a confirmation page in the console.

An email to one person about a failure carries the answers a chat message's
buttons would, as links to ``/ui/act?token=...``: the token is HMAC-signed
(``[actions] link_secret``), names the recipient and expires. Opening it changes
nothing; confirming it (a POST) does it once, as ``email:<recipient>``. The email
goes through the loopback SMTP server; the page through the service's console.
"""

from __future__ import annotations

import re
from typing import Any

import httpx

from flytenotify.config import (
    ActionsConfig,
    DatabaseConfig,
    GroupingConfig,
    Settings,
    TemplateConfig,
)
from tests.chat import fail, failing_run, serving
from tests.servers.smtp import SmtpServer

PUBLIC = "https://flytenotify.example.com"
SECRET = "kJ2m9Qz4rT7wX1bN5cV8hL3pS6dF0gA2yU4iO7eR9tW"
ONCALL = "oncall@example.com"


def settings_for(database_url: str, smtp: SmtpServer) -> Settings:
    return Settings(
        database=DatabaseConfig(url=database_url),
        grouping=GroupingConfig(by=[]),
        smtp=smtp.smtp_config(),
        templates=TemplateConfig(public_url=PUBLIC),
        actions=ActionsConfig.model_validate({"link_secret": SECRET}),
    )


def links_in(smtp: SmtpServer) -> dict[str, str]:
    """The signed links of the last email: label -> path under the service."""
    text = smtp.messages[-1].message.get_body(("plain",)).get_content().replace("\r\n", "\n")
    found = re.findall(rf"^  ([^:\n]+): {re.escape(PUBLIC)}(/ui/act\?token=\S+)$", text, re.M)
    return dict(found)


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert found, page
    return found.group(1)


async def confirm(client: httpx.AsyncClient, path: str, **change: Any) -> httpx.Response:
    page = await client.get(path)
    token = path.split("token=", 1)[1]
    form = {"csrf_token": csrf_of(page.text), "token": token, **change}
    return await client.post("/ui/act", data=form)


async def test_a_signed_link_asks_first_then_acknowledges_once_as_the_recipient(
    database_url: str,
) -> None:
    with SmtpServer() as smtp:
        async with serving(settings_for(database_url, smtp)) as (notifier, client):
            run = await fail(notifier, failing_run("e1", ONCALL))
            links = links_in(smtp)
            assert list(links) == ["Acknowledge", "Mute launch plan 1 h", "Mute 4 h"]

            opened = await client.get(links["Acknowledge"])
            assert opened.status_code == 200
            assert "Acknowledge?" in opened.text
            assert f"As <strong>{ONCALL}</strong>" in opened.text
            assert await notifier.acknowledgements(run) == []  # opening it does nothing

            done = await confirm(client, links["Acknowledge"])
            assert done.status_code == 200, done.text
            (ack,) = await notifier.acknowledgements(run)
            assert f"Acknowledged by {ONCALL} at {ack.acknowledged_at:%H:%M} UTC" in done.text

            again = await confirm(client, links["Acknowledge"])
            assert again.status_code == 409
            assert f"used already, by email:{ONCALL}" in again.text

            muted = await confirm(client, links["Mute 4 h"])
            assert muted.status_code == 200
            silences, _ = await notifier.silences(active=True)
            # The console shows the email as sent, less the links (the recipient's alone).
            (delivery,) = await notifier.deliveries()
            shown = (await client.get(f"/ui/deliveries/{delivery.id}")).text
    assert (ack.actor, ack.proof) == (f"email:{ONCALL}", "signed-link")
    (silence,) = silences
    assert (silence.launch_plan, silence.author) == ("train", f"email:{ONCALL}")
    assert (silence.ends_at - silence.starts_at).total_seconds() == 4 * 3600
    assert "token=" not in shown


async def test_an_altered_or_foreign_token_is_refused_and_changes_nothing(tmp_path: Any) -> None:
    with SmtpServer() as smtp:
        settings = settings_for(f"sqlite:///{tmp_path / 'x.db'}", smtp)
        async with serving(settings) as (notifier, client):
            run = await fail(notifier, failing_run("e2", ONCALL))
            path = links_in(smtp)["Acknowledge"]
            body, mac = path.split("token=", 1)[1].split(".")
            tampered = f"/ui/act?token={body[:-2]}AA.{mac}"
            opened = await client.get(tampered)
            posted = await confirm(client, path, token=f"{body}.{mac[:-2]}AA")
            garbage = await client.get("/ui/act?token=not-a-token")
            acknowledged = await notifier.acknowledgements(run)
    assert opened.status_code == 403
    assert "forged or altered" in opened.text
    assert posted.status_code == 403
    assert garbage.status_code == 400
    assert acknowledged == []
