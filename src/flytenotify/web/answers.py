"""What a click on a chat message's button does (flytenotify.chat says which buttons).

:func:`answer_click` does what the button asks, for the person the platform
vouches clicked it, and says what came of it in one line for the message
(:class:`ClickAnswer`); ``web/chat.py`` checks the callback first and shows
the answer on the message after.

- **Acknowledge** and **Mute**, by anyone who sees the message, or with
  ``[actions] acknowledge_and_mute = "allowed"`` only by people an
  ``[[actions.allow]]`` entry names in the execution's scope.
- **Acknowledge**: recorded once per execution and person
  (:meth:`~flytenotify.app.Notifier.acknowledge`); the execution's deadlines
  alert about it no more.
- **Mute 1 h / 4 h**: a silence of the project, domain and launch plan, made
  as the API makes one (:meth:`~flytenotify.app.Notifier.create_silence`),
  the person its author; a replay (a silence of the same launch plan in
  effect that already lasts as long, give or take the replay window) makes
  none.
- **Approve, Reject, Relaunch, Recover**: :meth:`~flytenotify.app.Notifier.act`,
  allowed, once and audited as every action is.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from flytenotify.app import Notifier
from flytenotify.chat import Button, ChatAction, answer_note, clock
from flytenotify.domain import ActionOutcome, Actor, Answer, ExecutionId, Silence
from flytenotify.errors import (
    Forbidden,
    InputError,
    UnknownReference,
    UpstreamRefused,
    UpstreamUnavailable,
)

__all__ = ["ClickAnswer", "answer_click"]

# A replayed callback arrives within the platform's replay window (Slack: 5 minutes):
# a mute whose silence already reaches this close to the new end is the same mute.
REPLAY_WINDOW = timedelta(minutes=5)


@dataclass(frozen=True)
class ClickAnswer:
    """What a click came to: ``note``, one line for the message (``{who}`` stands for
    the person, as the platform mentions them); ``settled`` when the question is
    answered (its buttons come off the message); ``retry`` when nothing could be done
    now (Flyte unreachable)."""

    note: str
    settled: bool
    retry: bool = False


async def answer_click(
    notifier: Notifier,
    button: Button,
    actor: Actor,
    where: str,
    platform: str,
    *,
    value: str | None = None,
) -> ClickAnswer:
    """Do what ``button`` asks for ``actor``, clicked on the message whose provider id is
    ``where``, on ``platform`` ("Slack", "Mattermost"); ``value``: the text a form
    asked for (Answer on a typed gate), read as the gate's type."""
    if button.action.flyte is not None:
        return await _act(notifier, button, actor, value)
    if not notifier.settings.actions.permits_answer(actor, button.execution_id):
        what = "acknowledge" if button.action is ChatAction.ACKNOWLEDGE else "mute"
        return ClickAnswer(f"Refused: {{who}} is not allowed to {what} here", settled=False)
    if button.action is ChatAction.ACKNOWLEDGE:
        return await _acknowledge(notifier, button, actor, where)
    return await _mute(notifier, button, actor, platform)


async def _acknowledge(notifier: Notifier, button: Button, actor: Actor, where: str) -> ClickAnswer:
    ack, new = await notifier.acknowledge(button.execution_id, actor, where)
    note = answer_note(Answer.of(ack))
    return ClickAnswer(note if new else f"Already {note[0].lower()}{note[1:]}", settled=True)


async def _mute(notifier: Notifier, button: Button, actor: Actor, platform: str) -> ClickAnswer:
    duration = button.action.mutes_for
    assert duration is not None
    eid = button.execution_id
    now = notifier.now()
    ends = now + duration
    held = await _muting(notifier, eid, button.launch_plan, ends - REPLAY_WINDOW)
    if held is not None:
        until = clock(held.ends_at)
        note = f"Launch plan {button.launch_plan} is already muted until {until} (by {held.author})"
        return ClickAnswer(note, settled=False)
    silence = Silence(
        project=eid.project,
        domain=eid.domain,
        launch_plan=button.launch_plan,
        starts_at=now,
        ends_at=ends,
        comment=f"muted from {platform}",
        author=actor.identity,
    )
    stored, _ = await notifier.create_silence(silence)
    note = (
        f"Launch plan {button.launch_plan} muted by {{who}} until {clock(ends)}"
        f" (silence {stored.id})"
    )
    return ClickAnswer(note, settled=False)


async def _muting(
    notifier: Notifier, eid: ExecutionId, plan: str, reaching: datetime
) -> Silence | None:
    """A silence in effect now of exactly this launch plan that lasts until ``reaching``."""
    page, _ = await notifier.silences(active=True)
    for silence in page:
        same = (silence.project, silence.domain, silence.launch_plan) == (
            eid.project,
            eid.domain,
            plan,
        )
        only = set(silence.matchers) == {"project", "domain", "launch_plan"}
        if same and only and silence.ends_at is not None and silence.ends_at >= reaching:
            return silence
    return None


async def _act(
    notifier: Notifier, button: Button, actor: Actor, value: str | None = None
) -> ClickAnswer:
    kind = button.action.flyte
    assert kind is not None
    try:
        done = await notifier.act(
            button.execution_id,
            kind,
            actor,
            signal_id=button.signal_id,
            value=value,
            from_text=value is not None,
        )
    except Forbidden:
        note = f"Refused: {{who}} is not allowed to {kind.value} here"
        return ClickAnswer(note, settled=False)
    except (InputError, UnknownReference) as refused:
        reasons = "; ".join(p.message for p in refused.problems)
        return ClickAnswer(f"Refused: {reasons}", settled=False)
    except UpstreamRefused as refused:
        return ClickAnswer(f"Flyte refused it: {refused}", settled=False)
    except UpstreamUnavailable:
        note = f"Could not {kind.value} now: Flyte cannot be reached; try again"
        return ClickAnswer(note, settled=False, retry=True)
    record = done.record
    at = clock(record.requested_at)
    if record.outcome is ActionOutcome.PENDING:
        note = f"Being {kind.past} by {record.actor}"
        return ClickAnswer(note, settled=False)
    if record.outcome is ActionOutcome.ANSWERED:
        return ClickAnswer(f"Nothing sent: {record.detail}", settled=True)
    if not done.new:
        note = f"Already {record.action.past} by {record.actor} at {at}"
        return ClickAnswer(note, settled=True)
    result = f": {record.result or record.detail}" if record.result or value else ""
    note = f"{record.action.past.capitalize()} by {{who}} at {at}{result}"
    return ClickAnswer(note, settled=True)
