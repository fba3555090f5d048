"""Acting on Flyte for people: answer a gate, relaunch, recover or abort an execution.

:class:`Actions` does what a person asks from a message (the HTTP API, the
CLI, and later the chat platforms' buttons, all through
:meth:`flytenotify.app.Notifier.act`), and records every request in the
ledger's ``actions`` table with who asked, how that was proven, and what came
of it:

- **who may** is ``[actions]``'s to say (:class:`~flytenotify.config.ActionsConfig`):
  an actor no ``[[actions.allow]]`` entry names for the action and the
  execution's project/domain is refused (recorded as refused, 403);
- **one decision each**: a gate is answered once (approve, reject and signal
  share its decision), an execution relaunched, recovered or aborted once. The
  decision is a unique key in the ledger, taken (``pending``) before Flyte is
  asked: a repeat, a replay or a second replica, at once or later, finds it
  and changes nothing ("already approved by X at T", or "being approved by X");
  a request whose process stopped mid-way lets go of it after
  :data:`PENDING_FOR` seconds. Relaunch and recover give the new execution a name derived from
  the old one, so Flyte itself refuses a second one (ALREADY_EXISTS), even
  when flytenotify died between asking and recording;
- **the value is checked against the gate's type before anything is sent**
  (a Flyte 1 signal's ``LiteralType``, a Flyte 2 condition's ``data_type``:
  bool, int, float or str); a wrong one is refused naming ``value``;
- **a gate answered elsewhere** (FlyteAdmin holds a value; the condition has
  ended or the control plane says it was signalled) is recorded as
  ``answered`` and reported as such, not as an error.

Flyte 1 executions go to FlyteAdmin (``[flyteadmin]``: ``SignalService``,
``RelaunchExecution``, ``RecoverExecution``, ``TerminateExecution``), Flyte 2
runs to the control plane (``[flyte2]``: ``SignalEvent``, ``CreateRun``,
``AbortRun``), each with flytenotify's own credentials. Which one an execution
belongs to is the ledger's to say (a run the Flyte 2 watch recorded); one the
ledger does not hold is a Flyte 2 run if its project/domain is watched, else a
Flyte 1 execution if FlyteAdmin is configured.

Failures keep the trail: Flyte unreachable is recorded as failed and raises
:class:`~flytenotify.errors.UpstreamUnavailable` (503, nothing done); Flyte's
final refusal is recorded as failed and raises
:class:`~flytenotify.errors.UpstreamRefused` (502).
"""

from __future__ import annotations

import asyncio
import getpass
import hashlib
import json
import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from flyteidl2.common import identifier_pb2, phase_pb2
from flyteidl2.workflow import run_definition_pb2, run_service_pb2

from flytenotify.config import ANONYMOUS, Settings
from flytenotify.domain import (
    ActionKind,
    ActionOutcome,
    ActionRecord,
    Actor,
    ExecutionId,
    NotificationSource,
    ValueKind,
)
from flytenotify.engine.render_runs import run_url
from flytenotify.errors import (
    Forbidden,
    InputError,
    Problem,
    UnknownReference,
    UpstreamRefused,
    UpstreamUnavailable,
)
from flytenotify.intake.events import check_execution_id
from flytenotify.intake.limits import identifier_problems, template_problems
from flytenotify.store.base import NewAction, Store

__all__ = [
    "ActionAnswer",
    "Actions",
    "GateValue",
    "api_token_actor",
    "cli_actor",
    "typed_value",
]

GateValue = bool | int | float | str
MAX_TEXT_VALUE = 4096  # characters of a str gate's value
# Seconds a request may hold a decision while Flyte is asked: longer, its process
# stopped before Flyte answered, and the decision is let go (the row kept as failed).
PENDING_FOR = 120.0
INT64 = (-(2**63), 2**63 - 1)
_ROOT = "a0"  # a Flyte 2 run's root action
_ENDED_RUN = frozenset(
    {
        phase_pb2.ACTION_PHASE_SUCCEEDED,
        phase_pb2.ACTION_PHASE_FAILED,
        phase_pb2.ACTION_PHASE_ABORTED,
        phase_pb2.ACTION_PHASE_TIMED_OUT,
        phase_pb2.ACTION_PHASE_RECOVERED,
    }
)
_EXPECTS = {
    ValueKind.BOOL: "true or false",
    ValueKind.INT: "an integer",
    ValueKind.FLOAT: "a number",
    ValueKind.STR: "a string",
}


def api_token_actor(token: str) -> Actor:
    """Who calls the API with ``token``: ``api-token:`` and the first 16 hex digits of its
    SHA-256 (the token itself is never kept)."""
    fingerprint = hashlib.sha256(token.encode()).hexdigest()[:16]
    return Actor(f"api-token:{fingerprint}", "api-token")


ANONYMOUS_ACTOR = Actor(ANONYMOUS, "none")


def cli_actor() -> Actor:
    """Whoever runs ``flytenotify act`` on the database: the local user."""
    return Actor(f"cli:{getpass.getuser()}", "local")


@dataclass(frozen=True)
class ActionAnswer:
    """What an action request came to: its record, and whether this request made it
    (False: an earlier decision answered it, and nothing changed)."""

    record: ActionRecord
    new: bool


def typed_value(kind: ValueKind, given: Any, *, from_text: bool = False) -> GateValue:
    """``given`` as a value of ``kind``, or :class:`InputError` naming ``value``.

    JSON types are taken as they are (``3`` for an int gate, not ``"3"``);
    ``from_text`` (a command line) reads them from their text.
    """
    if from_text and isinstance(given, str):
        given = _from_text(kind, given)
    number = isinstance(given, int | float) and not isinstance(given, bool)
    if kind is ValueKind.BOOL and isinstance(given, bool):
        return given
    if (
        kind is ValueKind.INT
        and number
        and isinstance(given, int)
        and INT64[0] <= given <= INT64[1]
    ):
        return given
    if kind is ValueKind.FLOAT and number and math.isfinite(given):
        return float(given)
    if kind is ValueKind.STR and isinstance(given, str):
        problems = template_problems(given, "value")
        if len(given) > MAX_TEXT_VALUE:
            problems = [Problem("value", f"is {len(given)} characters; at most {MAX_TEXT_VALUE}")]
        if problems:
            raise InputError(problems)
        return given
    raise InputError(
        Problem("value", f"the gate expects {_EXPECTS[kind]} ({kind.value}), got {given!r}")
    )


def _from_text(kind: ValueKind, text: str) -> Any:
    try:
        if kind is ValueKind.BOOL and text.lower() in ("true", "false"):
            return text.lower() == "true"
        if kind is ValueKind.INT and text.strip().lstrip("+-").isdigit():
            return int(text)
        if kind is ValueKind.FLOAT:
            return float(text)
    except ValueError:
        pass
    return text


def derived_name(execution_id: ExecutionId, action: ActionKind) -> str:
    """The name of the execution ``action`` makes of ``execution_id``: the same every
    time, so Flyte refuses a second one. A letter and 19 hex digits: a valid Flyte 1
    execution name and Flyte 2 run name (a DNS-1035 label)."""
    digest = hashlib.sha256(f"{execution_id}/{action.value}".encode()).hexdigest()
    return "f" + digest[:19]


class _Refuse(Exception):
    """flytenotify refuses the request: ``error`` says why (and how the API answers)."""

    def __init__(self, error: InputError) -> None:
        super().__init__(str(error))
        self.error = error


@dataclass(frozen=True)
class _Decided:
    outcome: ActionOutcome  # DONE or ANSWERED
    detail: str
    result: str = ""
    value: GateValue | None = None


@dataclass(frozen=True)
class _Request:
    execution_id: ExecutionId
    action: ActionKind
    actor: Actor
    target: str
    value: Any
    from_text: bool


def _new(
    request: _Request, outcome: ActionOutcome, *, detail: str = "", decision: str | None = None
) -> NewAction:
    value = request.value if isinstance(request.value, GateValue) else None
    return NewAction(
        request.execution_id,
        request.action,
        request.actor,
        outcome,
        datetime.now(UTC),
        target=request.target,
        value=value,
        detail=detail,
        decision=decision,
    )


class Actions:
    """Acting on Flyte for people, each request recorded (see the module doc)."""

    def __init__(self, store: Store, settings: Settings) -> None:
        self.store = store
        self.settings = settings
        self._admin: Any = None  # flytenotify.flyteadmin.FlyteAdmin, made on first use
        self._plane: Any = None  # flytenotify.controlplane.ControlPlane, made on first use

    async def close(self) -> None:
        if self._admin is not None:
            await self._admin.close()
        if self._plane is not None:
            await self._plane.close()

    async def history(self, execution_id: ExecutionId) -> list[ActionRecord]:
        return await self.store.list_actions(execution_id)

    async def act(
        self,
        execution_id: ExecutionId,
        action: ActionKind | str,
        actor: Actor,
        *,
        target: str = "",
        value: Any = None,
        from_text: bool = False,
    ) -> ActionAnswer:
        """Do ``action`` on ``execution_id`` for ``actor`` (``target``: the gate to answer,
        ``value``: what to answer a ``signal`` with), or answer with the decision an
        earlier request made. Raises as the module doc says; every outcome is recorded."""
        check_execution_id(execution_id, "execution")
        kind = _action_kind(action)
        _check_shape(kind, target, value)
        request = _Request(execution_id, kind, actor, target, value, from_text)
        decision = _decision(execution_id, kind, target)
        earlier = await self._earlier(decision)
        if earlier is not None:
            return ActionAnswer(earlier, new=False)
        if not self.settings.actions.permits(actor, kind, execution_id):
            refusal = Forbidden(Problem("actor", _not_allowed(request)))
            await self._record(request, ActionOutcome.REFUSED, str(refusal))
            raise refusal
        # The decision is held before Flyte is asked: a second request now, on any
        # replica, finds it and sends nothing.
        held, written = await self.store.record_action(
            _new(request, ActionOutcome.PENDING, decision=decision)
        )
        if not written:
            return ActionAnswer(held, new=False)
        return ActionAnswer(await self._carry_out(request, held, decision), new=True)

    async def _earlier(self, decision: str) -> ActionRecord | None:
        """The request that holds or took ``decision``; one pending so long its process
        must have stopped lets go of it."""
        earlier = await self.store.decided_action(decision)
        if earlier is None or earlier.outcome is not ActionOutcome.PENDING:
            return earlier
        cutoff = datetime.now(UTC).timestamp() - PENDING_FOR
        if await self.store.abandon_action(decision, cutoff):
            return None
        return await self.store.decided_action(decision)

    async def _carry_out(
        self, request: _Request, held: ActionRecord, decision: str
    ) -> ActionRecord:
        """Ask Flyte, and write what came of it over the held row."""
        value = request.value if isinstance(request.value, GateValue) else None
        try:
            decided = await self._decide(request)
        except _Refuse as refusal:
            await self._finish(held, ActionOutcome.REFUSED, str(refusal.error), value)
            raise refusal.error from None
        except UpstreamRefused as refused:
            await self._finish(held, ActionOutcome.FAILED, f"Flyte refused it: {refused}", value)
            raise
        except UpstreamUnavailable as unavailable:
            await self._finish(held, ActionOutcome.FAILED, str(unavailable), value)
            raise
        except BaseException as stopped:  # cancelled, or a fault of ours: let the decision go
            await asyncio.shield(
                self._finish(held, ActionOutcome.FAILED, f"stopped: {stopped!r}", value)
            )
            raise
        return await self.store.finish_action(
            held.id,
            decided.outcome,
            detail=decided.detail,
            result=decided.result,
            value=decided.value,
            decision=decision,
        )

    async def _finish(
        self, held: ActionRecord, outcome: ActionOutcome, detail: str, value: GateValue | None
    ) -> None:
        await self.store.finish_action(held.id, outcome, detail=detail, value=value)

    async def _record(self, request: _Request, outcome: ActionOutcome, detail: str) -> None:
        await self.store.record_action(_new(request, outcome, detail=detail))

    # -- which Flyte ----------------------------------------------------------------------

    async def _decide(self, request: _Request) -> _Decided:
        if await self._is_flyte2(request.execution_id):
            return await _Flyte2(self._control_plane(), self.settings).decide(request)
        return await _Flyte1(self._flyteadmin()).decide(request)

    async def _is_flyte2(self, execution_id: ExecutionId) -> bool:
        known = await self.store.get_execution(execution_id)
        flyte2 = self.settings.flyte2
        if known is not None:
            return known.source is NotificationSource.FLYTE2
        watched = (execution_id.project, execution_id.domain)
        if flyte2 is not None and watched in flyte2.watched:
            return True
        if self.settings.flyteadmin is None:
            raise _Refuse(
                UnknownReference(
                    Problem(
                        "name",
                        f"no execution {execution_id} is known here, and no Flyte can be asked"
                        " about it ([flyteadmin] is not configured, and [flyte2] watches no"
                        f" {execution_id.project}/{execution_id.domain})",
                    )
                )
            )
        return False

    def flyteadmin(self) -> Any:
        """The FlyteAdmin client actions use (made on first use): also the gate watch's."""
        return self._flyteadmin()

    def _flyteadmin(self) -> Any:
        if self.settings.flyteadmin is None:
            raise _Refuse(
                InputError(Problem("execution", "acting on Flyte 1 executions needs [flyteadmin]"))
            )
        if self._admin is None:
            from flytenotify.flyteadmin import FlyteAdmin

            self._admin = FlyteAdmin(self.settings.flyteadmin)
        return self._admin

    def _control_plane(self) -> Any:
        if self.settings.flyte2 is None:
            raise _Refuse(InputError(Problem("execution", "acting on Flyte 2 runs needs [flyte2]")))
        if self._plane is None:
            from flytenotify.controlplane import ControlPlane

            self._plane = ControlPlane(self.settings.flyte2)
        return self._plane


class _Flyte1:
    """Flyte 1 executions, through FlyteAdmin."""

    def __init__(self, admin: Any) -> None:
        self.admin = admin

    async def decide(self, request: _Request) -> _Decided:
        if request.action.answers_gate:
            return await self._answer_gate(request)
        if request.action is ActionKind.ABORT:
            return await self._abort(request)
        return await self._launch_again(request)

    async def _answer_gate(self, request: _Request) -> _Decided:
        eid, target = request.execution_id, request.target
        signals = await self.admin.signals(eid)
        signal = next((s for s in signals if s.signal_id == target), None)
        if signal is None:
            names = ", ".join(sorted(s.signal_id for s in signals)) or "none"
            raise _Refuse(
                UnknownReference(
                    Problem(
                        "signal_id",
                        f"FlyteAdmin has no gate {target!r} for execution {eid}"
                        f" (its gates: {names})",
                    )
                )
            )
        if signal.answered:
            return _Decided(
                ActionOutcome.ANSWERED,
                f"the gate was answered elsewhere: FlyteAdmin holds {_said(signal.value)}"
                " for it; nothing was sent",
                value=signal.value,
            )
        kind = _gate_kind(request, signal.expects, signal.type_text)
        value = _value_for(request, kind)
        await self.admin.set_signal(eid, target, kind, value)
        return _Decided(ActionOutcome.DONE, f"set {target} to {_said(value)}", value=value)

    async def _launch_again(self, request: _Request) -> _Decided:
        eid, action = request.execution_id, request.action
        name = derived_name(eid, action)
        launch = self.admin.relaunch if action is ActionKind.RELAUNCH else self.admin.recover
        try:
            made = await launch(eid, name)
        except UpstreamRefused as refused:
            if refused.code == "NOT_FOUND":
                raise _Refuse(_unknown_execution(eid, "FlyteAdmin")) from None
            if refused.code != "ALREADY_EXISTS":
                raise
            # Our own name: made by an earlier request that could not record it.
            made = ExecutionId(eid.project, eid.domain, name)
        return _Decided(ActionOutcome.DONE, f"{action.past} as {made}", result=str(made))

    async def _abort(self, request: _Request) -> _Decided:
        eid = request.execution_id
        try:
            await self.admin.terminate(eid, _abort_cause(request))
        except UpstreamRefused as refused:
            if refused.code == "NOT_FOUND":
                raise _Refuse(_unknown_execution(eid, "FlyteAdmin")) from None
            if refused.code != "FAILED_PRECONDITION":
                raise
            return _Decided(ActionOutcome.ANSWERED, f"the execution has ended: {refused.message}")
        return _Decided(ActionOutcome.DONE, "aborted")


class _Flyte2:
    """Flyte 2 runs, through the control plane."""

    def __init__(self, plane: Any, settings: Settings) -> None:
        self.plane = plane
        self.settings = settings

    async def decide(self, request: _Request) -> _Decided:
        if request.action.answers_gate:
            return await self._answer_gate(request)
        if request.action is ActionKind.ABORT:
            return await self._abort(request)
        if request.action is ActionKind.RECOVER:
            raise _Refuse(
                InputError(
                    Problem(
                        "action",
                        "Flyte 2 has no recover; relaunch runs it again from the start"
                        f"{self._console(request.execution_id)}",
                    )
                )
            )
        return await self._relaunch(request)

    async def _answer_gate(self, request: _Request) -> _Decided:
        found = await self._condition(request)
        details = found.details
        if details.status.phase != phase_pb2.ACTION_PHASE_PAUSED:
            return _ended_condition(details)
        simple = details.condition.type.simple
        kind = _gate_kind(request, ValueKind.of_simple(simple), _simple_name(simple))
        value = _value_for(request, kind)
        from flytenotify.controlplane import RunNotFound

        try:
            await self.plane.signal(details.id, details.metadata.parent, kind, value)
        except RunNotFound:
            raise _Refuse(_no_condition(request)) from None
        except UpstreamRefused as refused:
            if refused.code != "FAILED_PRECONDITION":
                raise
            # Signalled with another value, or ended, between our look and our answer.
            return _Decided(
                ActionOutcome.ANSWERED,
                f"the condition was answered elsewhere: the control plane says {refused.message}",
            )
        return _Decided(
            ActionOutcome.DONE, f"signalled {details.id.name} with {_said(value)}", value=value
        )

    async def _condition(self, request: _Request) -> run_service_pb2.GetActionDetailsResponse:
        """The condition ``target`` names: a condition action's name, or the condition's own
        name (``flyte.new_condition``'s), as the SDK's ``Condition.get`` finds it."""
        from flytenotify.controlplane import RunNotFound

        run_id = _run_id(request.execution_id)
        action_id = identifier_pb2.ActionIdentifier(run=run_id, name=request.target)
        try:
            found = await self.plane.action_details(action_id)
        except RunNotFound:
            try:
                conditions = (await self.plane.conditions(run_id)).actions
            except RunNotFound:
                raise _Refuse(_no_condition(request)) from None
            named = [a for a in conditions if a.metadata.condition.name == request.target]
            named.sort(key=lambda a: a.status.phase != phase_pb2.ACTION_PHASE_PAUSED)
            if not named:
                raise _Refuse(_no_condition(request)) from None
            found = await self.plane.action_details(named[0].id)
        if found.details.metadata.action_type != run_definition_pb2.ACTION_TYPE_CONDITION:
            raise _Refuse(
                InputError(
                    Problem("signal_id", f"{request.target!r} is an action of the run, not a gate")
                )
            )
        return found

    async def _abort(self, request: _Request) -> _Decided:
        eid = request.execution_id
        root = await self._root(eid)
        if root.action.status.phase in _ENDED_RUN:
            phase = phase_pb2.ActionPhase.Name(root.action.status.phase)
            return _Decided(ActionOutcome.ANSWERED, f"the run has ended ({_bare(phase)})")
        await self.plane.abort_run(_run_id(eid), _abort_cause(request))
        return _Decided(ActionOutcome.DONE, "aborted")

    async def _relaunch(self, request: _Request) -> _Decided:
        """A new run of the same task, inputs and run spec, if the control plane keeps them."""
        from flytenotify.controlplane import RunNotFound

        eid = request.execution_id
        details = await self._root(eid)
        new_id = identifier_pb2.RunIdentifier(
            project=eid.project, domain=eid.domain, name=derived_name(eid, request.action)
        )
        create = run_service_pb2.CreateRunRequest(
            run_id=new_id, run_spec=details.run_spec, source=run_definition_pb2.RUN_SOURCE_CLI
        )
        create.run_spec.ClearField("run_start_time")  # the new run's own, stamped by the server
        action = details.action
        if action.HasField("task"):
            create.task_spec.CopyFrom(action.task)
        elif action.metadata.task.id.name:
            create.task_id.CopyFrom(action.metadata.task.id)
        else:
            raise _Refuse(self._not_relaunchable(eid, "it names no task"))
        try:
            inputs = await self.plane.inputs_uri(
                identifier_pb2.ActionIdentifier(run=_run_id(eid), name=_ROOT)
            )
        except (RunNotFound, UpstreamRefused):
            inputs = ""
        if not inputs:
            raise _Refuse(self._not_relaunchable(eid, "the control plane keeps no inputs for it"))
        create.offloaded_input_data.uri = inputs
        made = await self.plane.create_run(create)
        ident = made.run.action.id.run
        made_id = ExecutionId(ident.project or eid.project, ident.domain or eid.domain, ident.name)
        return _Decided(ActionOutcome.DONE, f"relaunched as {made_id}", result=str(made_id))

    async def _root(self, eid: ExecutionId) -> Any:
        from flytenotify.controlplane import RunNotFound

        try:
            return (await self.plane.run_details(eid.project, eid.domain, eid.name)).details
        except RunNotFound:
            raise _Refuse(_unknown_execution(eid, "the Flyte 2 control plane")) from None

    def _not_relaunchable(self, eid: ExecutionId, why: str) -> InputError:
        return InputError(
            Problem(
                "action", f"run {eid} cannot be relaunched from here: {why}{self._console(eid)}"
            )
        )

    def _console(self, eid: ExecutionId) -> str:
        url = run_url(self.settings, eid.project, eid.domain, eid.name)
        return f"; in the console: {url}" if url else ""


# -- the request's shape ------------------------------------------------------------------


def _action_kind(action: ActionKind | str) -> ActionKind:
    try:
        return ActionKind(action)
    except ValueError:
        names = ", ".join(kind.value for kind in ActionKind)
        raise InputError(Problem("action", f"must be one of {names}, got {action!r}")) from None


def _check_shape(action: ActionKind, target: str, value: Any) -> None:
    problems: list[Problem] = []
    if action.answers_gate:
        if not target:
            problems.append(Problem("signal_id", f"{action.value} needs the gate to answer"))
        else:
            problems += identifier_problems(target, "signal_id", "name")
    elif target:
        problems.append(Problem("signal_id", f"{action.value} acts on the whole execution"))
    if action is ActionKind.SIGNAL:
        if value is None:
            problems.append(Problem("value", "signal needs a value (true, a number or a string)"))
        elif not isinstance(value, GateValue):
            problems.append(
                Problem("value", f"must be true, false, a number or a string, got {value!r}")
            )
    elif value is not None:
        problems.append(Problem("value", f"{action.value} takes no value"))
    if problems:
        raise InputError(problems)


def _decision(execution_id: ExecutionId, action: ActionKind, target: str) -> str:
    """What an action decides: a gate's answer (whichever action gives it), or one action
    on the whole execution."""
    if action.answers_gate:
        return f"{execution_id}/gate/{target}"
    return f"{execution_id}/{action.value}"


def _gate_kind(request: _Request, expects: ValueKind | None, type_text: str) -> ValueKind:
    if expects is None:
        raise _Refuse(
            InputError(
                Problem(
                    "signal_id",
                    f"gate {request.target!r} expects a {type_text} value, which cannot be given"
                    " from here (only bool, int, float and str)",
                )
            )
        )
    if request.action is not ActionKind.SIGNAL and expects is not ValueKind.BOOL:
        raise _Refuse(
            InputError(
                Problem(
                    "action",
                    f"gate {request.target!r} expects {_EXPECTS[expects]} ({expects.value}), not"
                    f" an approval: use signal with a value",
                )
            )
        )
    return expects


def _value_for(request: _Request, kind: ValueKind) -> GateValue:
    if request.action is ActionKind.APPROVE:
        return True
    if request.action is ActionKind.REJECT:
        return False
    try:
        return typed_value(kind, request.value, from_text=request.from_text)
    except InputError as wrong:
        raise _Refuse(wrong) from None


def _ended_condition(details: Any) -> _Decided:
    phase = _bare(phase_pb2.ActionPhase.Name(details.status.phase))
    if details.HasField("signal_info"):
        from flytenotify.flyteadmin import literal_value

        value = literal_value(details.signal_info.output)
        return _Decided(
            ActionOutcome.ANSWERED,
            f"the condition was answered elsewhere with {_said(value)}; nothing was sent",
            value=value,
        )
    return _Decided(ActionOutcome.ANSWERED, f"the condition has ended ({phase}); nothing was sent")


def _not_allowed(request: _Request) -> str:
    eid = request.execution_id
    return (
        f"{request.actor.identity} may not {request.action.value} in {eid.project}/{eid.domain}:"
        " no [[actions.allow]] entry names them for it"
    )


def _abort_cause(request: _Request) -> str:
    return f"aborted by {request.actor.identity} through flytenotify"


def _unknown_execution(eid: ExecutionId, where: str) -> UnknownReference:
    return UnknownReference(Problem("name", f"{where} has no execution {eid}"))


def _no_condition(request: _Request) -> UnknownReference:
    return UnknownReference(
        Problem("signal_id", f"run {request.execution_id} has no gate {request.target!r}")
    )


def _run_id(eid: ExecutionId) -> identifier_pb2.RunIdentifier:
    return identifier_pb2.RunIdentifier(project=eid.project, domain=eid.domain, name=eid.name)


def _simple_name(simple: int) -> str:
    from flyteidl2.core import types_pb2

    try:
        return _bare(types_pb2.SimpleType.Name(simple))
    except ValueError:
        return str(simple)


def _bare(name: str) -> str:
    return name.removeprefix("ACTION_PHASE_")


def _said(value: GateValue | None) -> str:
    """A value as JSON writes it: ``true``, ``3``, ``"ship it"``."""
    if value is None:
        return "a value that is not a scalar"
    return json.dumps(value, ensure_ascii=False)
