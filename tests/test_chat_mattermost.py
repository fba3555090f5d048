"""Answering from Mattermost: the buttons on flytenotify's posts, clicked.

The loopback Mattermost holds the posts flytenotify made through its REST API,
makes the request Mattermost sends to a button's integration URL when someone
clicks it, and applies the answer's ``update`` to the post as Mattermost does.
Mattermost signs nothing: each button carries an HMAC of what it asks and until
when, and one altered, forged or expired is refused before anything is done.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import SecretStr

from flytenotify import WorkflowExecutionPhase as P
from flytenotify.channels.mattermost import MattermostConfig
from flytenotify.chat import Button, ChatAction, sign_context
from flytenotify.config import (
    DatabaseConfig,
    GroupingConfig,
    Settings,
    TemplateConfig,
)
from flytenotify.domain import ExecutionEvent
from tests.chat import WAIT, fail, failing_run, serving
from tests.servers.mattermost_api import BOT_TOKEN, MattermostServer

SECRET = "Vq0c2mQk1hHq3yYb6x0tJ4lS8rP5nW7eZ9aD3fG1uK0"
PUBLIC = "https://flytenotify.example.com"
PATH = "/api/v1/chat/mattermost/actions"
ALICE_ID = "a" * 26


def settings_for(database_url: str, mm: MattermostServer, secret: str | None = SECRET) -> Settings:
    section = MattermostConfig(
        url=mm.base,
        bot_token=SecretStr(BOT_TOKEN),
        team="ops",
        action_secret=SecretStr(secret) if secret else None,
    )
    return Settings(
        database=DatabaseConfig(url=database_url),
        grouping=GroupingConfig(by=[]),
        mattermost=section,
        templates=TemplateConfig(public_url=PUBLIC),
    )


async def click(
    client: httpx.AsyncClient, mm: MattermostServer, post_id: str, action: str, **change: Any
) -> httpx.Response:
    url, body = mm.action(post_id, action, user_id=ALICE_ID, user_name="alice")
    assert url == PUBLIC + PATH  # where Mattermost would send it: here, through the test client
    body["context"] = {**body["context"], **change}
    return await client.post(PATH, json=body)


async def test_acknowledge_from_mattermost_updates_the_post_and_is_recorded_once(
    database_url: str,
) -> None:
    async with (
        MattermostServer() as mm,
        serving(settings_for(database_url, mm)) as (notifier, client),
    ):
        run = await fail(notifier, failing_run("m1", "mattermost:alerts"))
        (root,) = mm.roots()
        post_id = root["id"]
        assert mm.buttons(post_id) == ["flytenotifyack", "flytenotifymute1h", "flytenotifymute4h"]

        answer = await click(client, mm, post_id, "flytenotifyack")
        assert answer.status_code == 200, answer.text
        mm.apply(post_id, answer.json())
        (ack,) = await notifier.acknowledgements(run)
        again = await click(client, mm, post_id, "flytenotifymute1h")  # still on the post
        assert again.status_code == 200
        replay_body = mm.action(post_id, "flytenotifymute1h", user_id=ALICE_ID, user_name="alice")
        replayed = await client.post(PATH, json=replay_body[1])
        silences, _ = await notifier.silences(active=True)
    assert (ack.actor, ack.proof, ack.message) == ("mattermost:alice", "mattermost-hmac", post_id)
    post = mm.stored[post_id]
    assert post["message"].endswith(f"Acknowledged by @alice at {ack.acknowledged_at:%H:%M} UTC")
    assert "flytenotifyack" not in mm.buttons(post_id)
    assert post["props"]["flytenotify_delivery"]  # the post's own props kept
    (silence,) = silences
    assert (silence.launch_plan, silence.author) == ("train", "mattermost:alice")
    assert silence.comment == "muted from Mattermost"
    assert "already muted" in replayed.json()["update"]["message"]


async def test_a_recovery_rewriting_an_acknowledged_post_still_says_who_acknowledged_it(
    database_url: str,
) -> None:
    async with (
        MattermostServer() as mm,
        serving(settings_for(database_url, mm)) as (notifier, client),
    ):
        run = await fail(notifier, failing_run("m1", "mattermost:alerts"))
        (root,) = mm.roots()
        answer = await click(client, mm, root["id"], "flytenotifyack")
        mm.apply(root["id"], answer.json())
        (ack,) = await notifier.acknowledgements(run)

        again = failing_run("m2", "mattermost:alerts")  # the same task, succeeding
        succeeded = ExecutionEvent(again.id, P.SUCCEEDED, datetime.now(UTC))
        await notifier.record_checked_events([succeeded], {again.id: again})
        await notifier.run_until_idle(include_retries=True, max_wait=WAIT)
    post = mm.stored[root["id"]]
    assert "**Recovered:**" in post["message"]
    assert f"Acknowledged by @alice at {ack.acknowledged_at:%H:%M} UTC" in post["message"]
    assert len(mm.replies(root["id"])) == 1


async def test_forged_altered_and_expired_buttons_are_refused_and_change_nothing(
    tmp_path: Any,
) -> None:
    async with (
        MattermostServer() as mm,
        serving(settings_for(f"sqlite:///{tmp_path / 'x.db'}", mm)) as (notifier, client),
    ):
        run = await fail(notifier, failing_run("m2", "mattermost:alerts"))
        (root,) = mm.roots()
        post_id = root["id"]
        _, body = mm.action(post_id, "flytenotifyack", user_id=ALICE_ID, user_name="alice")
        button = body["context"]["button"]
        # A mute passed off as the acknowledge the HMAC was made for.
        altered = await click(
            client, mm, post_id, "flytenotifyack", button={**button, "action": "mute_4h"}
        )
        # A button made with another key.
        forged_context = sign_context(
            Button(ChatAction.ACKNOWLEDGE, run), b"not-the-secret", time.time() + 60
        )
        forged = await client.post(PATH, json={**body, "context": forged_context})
        # One made with the right key, but past its expiry.
        expired_context = sign_context(
            Button(ChatAction.ACKNOWLEDGE, run), SECRET.encode(), time.time() - 1
        )
        expired = await client.post(PATH, json={**body, "context": expired_context})
        malformed = await client.post(PATH, json={"user_id": ALICE_ID})
        acknowledged = await notifier.acknowledgements(run)
        silences, _ = await notifier.silences()
    for refused in (altered, forged):
        assert refused.status_code == 401
        assert refused.json()["problems"][0]["field"] == "context.mac"
    assert expired.status_code == 401
    assert expired.json()["problems"][0]["field"] == "context.expires"
    assert malformed.status_code == 400
    assert malformed.json()["problems"][0]["field"] == "context"
    assert acknowledged == []
    assert silences == []
    assert "Acknowledged" not in mm.stored[post_id]["message"]


async def test_without_an_action_secret_posts_have_no_buttons(tmp_path: Any) -> None:
    async with (
        MattermostServer() as mm,
        serving(settings_for(f"sqlite:///{tmp_path / 'x.db'}", mm, secret=None)) as (n, client),
    ):
        await fail(n, failing_run("m3", "mattermost:alerts"))
        answer = await client.post(PATH, json={"user_id": ALICE_ID, "context": {}})
    (root,) = mm.roots()
    assert mm.buttons(root["id"]) == []
    assert answer.status_code == 404
    assert answer.json()["problems"][0]["field"] == "mattermost.action_secret"
