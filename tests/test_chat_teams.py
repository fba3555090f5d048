"""Answering from Teams: a webhook's card cannot call back, so its buttons are signed
links to the console's confirmation page, as an email's are.

A card about a failure carries Acknowledge and Mute (and Relaunch or Recover where
``[[actions.allow]]`` names the channel) as ``Action.OpenUrl`` buttons. Whoever
reads the channel of the ``[teams.NAME]`` webhook can follow them, so each acts
as ``teams:NAME``: opening one changes nothing, confirming it does it once. The
card goes through the loopback Teams webhook, the page through the console.
"""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from flytenotify.channels.teams import TeamsTarget
from flytenotify.config import (
    ActionsConfig,
    DatabaseConfig,
    GroupingConfig,
    Settings,
    TemplateConfig,
)
from tests.chat import fail, failing_run, serving
from tests.servers.teams_webhook import TeamsWebhookServer
from tests.test_chat_email import PUBLIC, SECRET, confirm


def settings_for(database_url: str, teams: TeamsWebhookServer, **actions: Any) -> Settings:
    return Settings(
        database=DatabaseConfig(url=database_url),
        grouping=GroupingConfig(by=[]),
        teams={"oncall": TeamsTarget(url=SecretStr(teams.workflow_url), per_webhook_interval=0)},
        templates=TemplateConfig(public_url=PUBLIC, console_url="https://flyte.example.com"),
        actions=ActionsConfig.model_validate({"link_secret": SECRET, **actions}),
    )


def buttons(teams: TeamsWebhookServer) -> dict[str, str]:
    """The last card's buttons: title -> URL."""
    return {action["title"]: action["url"] for action in teams.posted[-1].card["actions"]}


def answer_links(teams: TeamsWebhookServer) -> dict[str, str]:
    """The last card's answer links: title -> path under the service."""
    found = buttons(teams)
    return {title: url[len(PUBLIC) :] for title, url in found.items() if url.startswith(PUBLIC)}


async def test_a_cards_links_ask_first_then_act_once_as_the_teams_channel(
    database_url: str,
) -> None:
    async with (
        TeamsWebhookServer() as teams,
        serving(settings_for(database_url, teams)) as (notifier, client),
    ):
        run = await fail(notifier, failing_run("t1", "teams:oncall"))
        links = answer_links(teams)
        assert list(links) == ["Acknowledge", "Mute launch plan 1 h", "Mute 4 h"]
        assert list(buttons(teams))[-1] == "View in Flyte console"  # still there, last

        opened = await client.get(links["Acknowledge"])
        assert opened.status_code == 200
        assert "As <strong>teams:oncall</strong> (whoever reads that Teams channel)" in (
            opened.text
        )
        assert await notifier.acknowledgements(run) == []  # opening it does nothing

        done = await confirm(client, links["Acknowledge"])
        assert done.status_code == 200, done.text
        (ack,) = await notifier.acknowledgements(run)
        assert f"Acknowledged by teams:oncall at {ack.acknowledged_at:%H:%M} UTC" in done.text
        again = await confirm(client, links["Acknowledge"])
        assert again.status_code == 409
        assert "used already, by teams:oncall" in again.text

        muted = await confirm(client, links["Mute launch plan 1 h"])
        assert muted.status_code == 200, muted.text
        silences, _ = await notifier.silences(active=True)
    assert (ack.actor, ack.proof) == ("teams:oncall", "signed-link")
    (silence,) = silences
    assert (silence.launch_plan, silence.author) == ("train", "teams:oncall")
    assert silence.comment == "muted from Teams"


async def test_relaunch_is_a_link_only_where_actions_allow_the_channel(tmp_path: Any) -> None:
    allow = [{"project": "proj", "actors": ["teams:oncall"], "actions": ["relaunch"]}]
    async with TeamsWebhookServer() as teams:
        for name, actions in (("closed", {}), ("open", {"allow": allow})):
            url = f"sqlite:///{tmp_path / name}.db"
            async with serving(settings_for(url, teams, **actions)) as (notifier, _):
                await fail(notifier, failing_run(name, "teams:oncall"))
            offered = list(answer_links(teams))
            assert ("Relaunch" in offered) is (name == "open"), offered
            assert "Recover" not in offered  # not named for the channel


async def test_without_a_link_secret_a_card_has_only_the_console_link(tmp_path: Any) -> None:
    async with TeamsWebhookServer() as teams:
        settings = settings_for(f"sqlite:///{tmp_path / 'x.db'}", teams)
        settings = settings.model_copy(update={"actions": ActionsConfig()})
        async with serving(settings) as (notifier, _):
            await fail(notifier, failing_run("t2", "teams:oncall"))
    assert list(buttons(teams)) == ["View in Flyte console"]
