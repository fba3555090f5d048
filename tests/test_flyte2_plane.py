"""The loopback Flyte 2 control plane behaves as the open-source server does.

Everything here goes through the real connectrpc ``RunServiceClient`` over 127.0.0.1, so
that what the intake is later tested against is known to answer like the open-source
server (flyteorg/flyte ``main``, ``runs/service/run_service.go``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime

import flyte.notify
import pyqwest
import pytest
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from flyte._internal.runtime.notifications_serde import resolve_notification_settings
from flyte.models import ActionPhase
from flyteidl2.auth import auth_service_pb2
from flyteidl2.auth.auth_service_connect import AuthMetadataServiceClient
from flyteidl2.common import identifier_pb2, list_pb2
from flyteidl2.workflow import run_definition_pb2, run_service_pb2
from flyteidl2.workflow.run_service_connect import RunServiceClient

from tests.servers.flyte2 import (
    ABORTED,
    FAILED,
    PAUSED,
    QUEUED,
    RUNNING,
    SUCCEEDED,
    TIMED_OUT,
    Flyte2Plane,
    RunKey,
)
from tests.servers.smtp import default_ca

PROJECT = "flytesnacks"
DOMAIN = "development"
READ = 10.0  # bound on waiting for one stream message

EMAIL_ON_FAILURE = flyte.notify.Email(on_phase=ActionPhase.FAILED, recipients=("oncall@x.test",))


@pytest.fixture
def plane() -> Iterator[Flyte2Plane]:
    with Flyte2Plane() as running:
        yield running


def project_id(project: str = PROJECT, domain: str = DOMAIN) -> identifier_pb2.ProjectIdentifier:
    return identifier_pb2.ProjectIdentifier(name=project, domain=domain)


def watch_request(project: str = PROJECT) -> run_service_pb2.WatchRunsRequest:
    return run_service_pb2.WatchRunsRequest(project_id=project_id(project))


def list_request(
    *,
    limit: int = 0,
    token: str = "",
    sort: list_pb2.Sort | None = None,
    filters: tuple[list_pb2.Filter, ...] = (),
    paused_only: bool = False,
) -> run_service_pb2.ListRunsRequest:
    request = list_pb2.ListRequest(limit=limit, token=token, filters=filters)
    if sort is not None:
        request.sort_by_fields.append(sort)
    return run_service_pb2.ListRunsRequest(
        request=request, project_id=project_id(), paused_actions_only=paused_only
    )


def names(runs: object) -> list[str]:
    return [run.action.id.run.name for run in runs]  # type: ignore[attr-defined]


async def next_message(stream: AsyncIterator[run_service_pb2.WatchRunsResponse]) -> list[str]:
    message = await asyncio.wait_for(anext(stream), READ)
    return names(message.runs)


async def details(client: RunServiceClient, run: RunKey) -> run_definition_pb2.ActionDetails:
    request = run_service_pb2.GetRunDetailsRequest(run_id=run.identifier())
    return (await client.get_run_details(request)).details.action


# -- the RunSpec comes from the SDK ------------------------------------------------------------


async def test_the_run_spec_is_what_the_sdk_sends(plane: Flyte2Plane) -> None:
    slack = flyte.notify.Slack(
        on_phase=(ActionPhase.SUCCEEDED, ActionPhase.FAILED), webhook_url="https://hooks.x.test/1"
    )
    run = plane.start_run(PROJECT, DOMAIN, "rspec", notifications=(EMAIL_ON_FAILURE, slack))
    named = plane.start_run(PROJECT, DOMAIN, notifications=flyte.notify.NamedRule("oncall"))

    client = RunServiceClient(plane.endpoint)
    answer = await client.get_run_details(
        run_service_pb2.GetRunDetailsRequest(run_id=run.identifier())
    )
    _, expected = resolve_notification_settings((EMAIL_ON_FAILURE, slack))
    assert answer.details.run_spec.notification_rules == expected
    assert answer.details.run_spec.HasField("run_start_time")  # stamped by the server
    named_spec = plane.run_spec(named)
    assert named_spec.notification_rule_name == "oncall"
    assert not named_spec.HasField("notification_rules")
    assert len(named.name) == 20  # generateRunName: "r" and 19 characters
    assert named.name.startswith("r")
    # The driver's own calls (GetTaskDetails, UploadInputs, CreateRun) are not recorded.
    assert [call.method for call in plane.calls] == ["GetRunDetails"]


# -- WatchRuns ------------------------------------------------------------------------------


async def test_watch_sends_a_snapshot_then_one_run_per_change(plane: Flyte2Plane) -> None:
    old = plane.start_run(PROJECT, DOMAIN, "r-old")
    plane.finish(old, SUCCEEDED)
    new = plane.start_run(PROJECT, DOMAIN, "r-new")
    queued = plane.start_run(PROJECT, DOMAIN, "r-queued", phase=None)  # created, never updated
    other = plane.start_run("elsewhere", DOMAIN, "r-other")

    stream = RunServiceClient(plane.endpoint).watch_runs(watch_request())
    # The server's order: phase ascending (non-terminal first), then newest first.
    assert await next_message(stream) == ["r-queued", "r-new", "r-old"]

    plane.finish(other, FAILED, error="not ours")  # another project: filtered out
    plane.finish(new, FAILED, error="boom")
    message = await asyncio.wait_for(anext(stream), READ)
    assert names(message.runs) == ["r-new"]
    assert message.runs[0].action.status.phase == FAILED
    assert message.runs[0].action.id.name == "a0"
    assert not message.runs[0].action.HasField("metadata") or (
        message.runs[0].action.metadata.action_type == run_definition_pb2.ACTION_TYPE_TASK
    )

    plane.set_phase(queued, RUNNING)  # its first phase write is its first appearance
    assert await next_message(stream) == ["r-queued"]
    plane.set_phase(queued, RUNNING)  # a write that changes nothing is still sent
    assert await next_message(stream) == ["r-queued"]
    await stream.aclose()


async def test_the_snapshot_is_capped_one_past_the_limit(tmp_path: object) -> None:
    with Flyte2Plane(snapshot_limit=2) as plane:
        for number in range(5):
            plane.start_run(PROJECT, DOMAIN, f"r{number}")
        stream = RunServiceClient(plane.endpoint).watch_runs(watch_request())
        # The repository fetches limit + 1 rows and WatchRuns sends them all.
        assert await next_message(stream) == ["r4", "r3", "r2"]
        await stream.aclose()


async def test_an_empty_project_gets_nothing_until_a_run_changes(plane: Flyte2Plane) -> None:
    stream = RunServiceClient(plane.endpoint).watch_runs(watch_request())
    first = asyncio.ensure_future(anext(stream))
    await plane.wait_for_watchers(1)
    elsewhere = plane.start_run("elsewhere", DOMAIN, "r-elsewhere")
    plane.finish(elsewhere, SUCCEEDED)
    plane.start_run(PROJECT, DOMAIN, "r-first")
    # No snapshot came before: the first message is the update of the first run.
    message = await asyncio.wait_for(first, READ)
    assert names(message.runs) == ["r-first"]
    assert message.runs[0].action.status.phase == RUNNING
    await stream.aclose()


async def test_a_stream_cut_by_the_server_raises_on_the_client(plane: Flyte2Plane) -> None:
    plane.start_run(PROJECT, DOMAIN, "r1")
    client = RunServiceClient(plane.endpoint)
    stream = client.watch_runs(watch_request())
    assert await next_message(stream) == ["r1"]

    plane.drop_streams()  # "reset": the connection is cut mid-stream
    with pytest.raises(ConnectError):
        await asyncio.wait_for(anext(stream), READ)
    await plane.wait_for_watchers(0)


async def test_a_client_that_leaves_closes_its_stream(plane: Flyte2Plane) -> None:
    async def watch() -> None:
        async for _ in RunServiceClient(plane.endpoint).watch_runs(watch_request()):
            pass

    watching = asyncio.create_task(watch())
    await plane.wait_for_watchers(1)
    watching.cancel()  # as a watcher shutting down
    with pytest.raises((asyncio.CancelledError, ConnectError)):
        await watching
    await plane.wait_for_watchers(0)  # noticed while waiting, with nothing to send


@pytest.mark.parametrize("mode", ["end", "error"])
async def test_a_stream_can_end_cleanly_or_with_unavailable(plane: Flyte2Plane, mode: str) -> None:
    plane.start_run(PROJECT, DOMAIN, "r1")
    stream = RunServiceClient(plane.endpoint).watch_runs(watch_request())
    assert await next_message(stream) == ["r1"]

    plane.drop_streams(mode)  # type: ignore[arg-type]
    if mode == "end":
        with pytest.raises(StopAsyncIteration):
            await asyncio.wait_for(anext(stream), READ)
    else:
        with pytest.raises(ConnectError) as caught:
            await asyncio.wait_for(anext(stream), READ)
        assert caught.value.code == Code.UNAVAILABLE


async def test_a_stopped_plane_refuses_and_comes_back_on_the_same_port(
    plane: Flyte2Plane,
) -> None:
    run = plane.start_run(PROJECT, DOMAIN, "r1")
    client = RunServiceClient(plane.endpoint)
    stream = client.watch_runs(watch_request())
    assert await next_message(stream) == ["r1"]
    port = plane.port

    plane.stop()
    with pytest.raises(ConnectError):
        await asyncio.wait_for(anext(stream), READ)
    with pytest.raises(ConnectError) as refused:
        await client.list_runs(list_request())
    assert refused.value.code == Code.UNAVAILABLE
    plane.finish(run, FAILED, error="while nobody watched")  # runs go on while it is down
    later = plane.start_run(PROJECT, DOMAIN, "r2")

    plane.start()
    assert plane.port == port
    again = client.watch_runs(watch_request())
    assert await next_message(again) == [later.name, "r1"]
    await again.aclose()


# -- ListRuns -------------------------------------------------------------------------------


async def test_list_runs_pages_by_offset_in_the_default_order(plane: Flyte2Plane) -> None:
    for number in range(5):
        plane.start_run(PROJECT, DOMAIN, f"r{number}")
    plane.finish(RunKey(PROJECT, DOMAIN, "r4"), SUCCEEDED)
    client = RunServiceClient(plane.endpoint)

    pages: list[list[str]] = []
    tokens: list[str] = []
    token = ""
    for _ in range(5):
        answer = await client.list_runs(list_request(limit=2, token=token))
        pages.append(names(answer.runs))
        tokens.append(answer.token)
        token = answer.token
        if not token:
            break
    assert pages == [["r3", "r2"], ["r1", "r0"], ["r4"]]  # running first, newest first
    assert tokens == ["2", "4", ""]

    everything = await client.list_runs(list_request())  # limit 0: the default, 50
    assert names(everything.runs) == ["r3", "r2", "r1", "r0", "r4"]
    assert everything.token == ""


async def test_list_runs_sorts_and_filters_on_the_server_columns(plane: Flyte2Plane) -> None:
    for number in range(3):
        plane.start_run(PROJECT, DOMAIN, f"r{number}")
    plane.finish(RunKey(PROJECT, DOMAIN, "r1"), FAILED, error="boom")
    client = RunServiceClient(plane.endpoint)

    oldest_first = list_pb2.Sort(key="created_at", direction=list_pb2.Sort.ASCENDING)
    answer = await client.list_runs(list_request(sort=oldest_first))
    assert names(answer.runs) == ["r0", "r1", "r2"]

    failed = list_pb2.Filter(function=list_pb2.Filter.EQUAL, field="phase", values=[str(FAILED)])
    answer = await client.list_runs(list_request(filters=(failed,)))
    assert names(answer.runs) == ["r1"]

    terminal = list_pb2.Filter(
        function=list_pb2.Filter.VALUE_IN,
        field="phase",
        values=[str(SUCCEEDED), str(FAILED), str(ABORTED), str(TIMED_OUT)],
    )
    answer = await client.list_runs(list_request(filters=(terminal,)))
    assert names(answer.runs) == ["r1"]

    with pytest.raises(ConnectError) as too_many:
        await client.list_runs(list_request(limit=201))
    assert too_many.value.code == Code.INVALID_ARGUMENT
    with pytest.raises(ConnectError) as bad_sort:
        await client.list_runs(list_request(sort=list_pb2.Sort(key="labels")))
    assert bad_sort.value.code == Code.INVALID_ARGUMENT
    with pytest.raises(ConnectError) as bad_token:
        await client.list_runs(list_request(token="next"))
    assert bad_token.value.code == Code.INVALID_ARGUMENT


async def test_list_runs_filters_on_update_time(plane: Flyte2Plane) -> None:
    plane.start_run(PROJECT, DOMAIN, "r-before")
    since = datetime.now(UTC).isoformat()  # as the SDK's time_filtering writes it
    late = plane.start_run(PROJECT, DOMAIN, "r-after")
    plane.finish(late, SUCCEEDED)
    client = RunServiceClient(plane.endpoint)

    newer = list_pb2.Filter(
        function=list_pb2.Filter.GREATER_THAN_OR_EQUAL, field="updated_at", values=[since]
    )
    answer = await client.list_runs(list_request(filters=(newer,)))
    assert names(answer.runs) == ["r-after"]


# -- GetRunDetails ----------------------------------------------------------------------------


async def test_details_carry_the_error_of_the_last_attempt(plane: Flyte2Plane) -> None:
    run = plane.start_run(PROJECT, DOMAIN, "r1", notifications=EMAIL_ON_FAILURE)
    plane.finish(run, FAILED, error="ValueError: boom", code="USER:ValueError")
    client = RunServiceClient(plane.endpoint)

    action = await details(client, run)
    assert action.status.phase == FAILED
    assert action.error_info.message == "ValueError: boom"
    assert action.error_info.kind == run_definition_pb2.ErrorInfo.KIND_USER
    assert action.error_info.code == "USER:ValueError"
    assert [attempt.attempt for attempt in action.attempts] == [1]


async def test_details_without_the_last_attempts_events_have_no_error(
    plane: Flyte2Plane,
) -> None:
    run = plane.start_run(PROJECT, DOMAIN, "r1")
    plane.retry(run, "OOMKilled")  # attempt 1 fails, attempt 2 starts in place
    plane.finish(run, FAILED, events=False)  # phase written, attempt 2's events not yet
    client = RunServiceClient(plane.endpoint)

    action = await details(client, run)
    assert action.status.phase == FAILED
    assert action.status.attempts == 2
    assert not action.HasField("error_info")
    assert [attempt.attempt for attempt in action.attempts] == [1]
    assert action.attempts[-1].error_info.message == "OOMKilled"

    plane.record_attempt(run, 2, FAILED, error="OOMKilled again")  # the events arrive
    action = await details(client, run)
    assert action.error_info.message == "OOMKilled again"
    assert len(plane.calls_to("GetRunDetails")) == 2


async def test_details_of_aborted_and_timed_out_runs(plane: Flyte2Plane) -> None:
    aborted = plane.start_run(PROJECT, DOMAIN, "r-aborted")
    timed_out = plane.start_run(PROJECT, DOMAIN, "r-timed-out")
    client = RunServiceClient(plane.endpoint)
    await client.abort_run(run_service_pb2.AbortRunRequest(run_id=aborted.identifier()))
    plane.finish(timed_out, TIMED_OUT, error="deadline exceeded")

    action = await details(client, aborted)
    assert action.status.phase == ABORTED
    assert action.abort_info.reason == "User requested abort"
    action = await details(client, timed_out)
    assert action.status.phase == TIMED_OUT
    assert action.WhichOneof("result") is None  # only FAILED gets error_info
    assert action.attempts[-1].error_info.message == "deadline exceeded"

    with pytest.raises(ConnectError) as missing:
        await details(client, RunKey(PROJECT, DOMAIN, "r-nobody"))
    assert missing.value.code == Code.NOT_FOUND


# -- a run waiting for input -------------------------------------------------------------------


async def test_a_paused_condition_is_seen_through_list_calls_not_watch(
    plane: Flyte2Plane,
) -> None:
    waiting = plane.start_run(PROJECT, DOMAIN, "r-waiting")
    busy = plane.start_run(PROJECT, DOMAIN, "r-busy")
    client = RunServiceClient(plane.endpoint)
    stream = client.watch_runs(watch_request())
    assert await next_message(stream) == ["r-busy", "r-waiting"]

    approval = plane.pause(
        waiting, prompt="Deploy to prod?", description="Release 1.2", timeout=3600.0
    )
    plane.finish(busy, SUCCEEDED)
    # The pause sent nothing: the next message is the other run's change.
    assert await next_message(stream) == ["r-busy"]
    assert plane.phase_of(waiting) == RUNNING  # the root keeps running while it waits
    await stream.aclose()

    paused = await client.list_runs(list_request(paused_only=True))
    assert names(paused.runs) == ["r-waiting"]
    assert paused.runs[0].action.status.phase == RUNNING

    phase_paused = list_pb2.Filter(
        function=list_pb2.Filter.EQUAL, field="phase", values=[str(PAUSED)]
    )
    actions = await client.list_actions(
        run_service_pb2.ListActionsRequest(
            run_id=waiting.identifier(), request=list_pb2.ListRequest(filters=[phase_paused])
        )
    )
    assert [a.id.name for a in actions.actions] == [approval.name]

    answer = await client.get_action_details(
        run_service_pb2.GetActionDetailsRequest(action_id=actions.actions[0].id)
    )
    condition = answer.details
    assert condition.metadata.action_type == run_definition_pb2.ACTION_TYPE_CONDITION
    assert condition.metadata.parent == "a0"
    assert condition.status.phase == PAUSED
    assert condition.condition.prompt == "Deploy to prod?"
    assert condition.condition.description == "Release 1.2"
    assert condition.condition.timeout.seconds == 3600

    plane.resume(approval)
    paused = await client.list_runs(list_request(paused_only=True))
    assert names(paused.runs) == []


# -- auth -------------------------------------------------------------------------------------


async def test_calls_without_the_token_are_refused() -> None:
    with Flyte2Plane(token="s3cret") as plane:
        plane.start_run(PROJECT, DOMAIN, "r1")  # the driver's door needs no token
        client = RunServiceClient(plane.endpoint)

        with pytest.raises(ConnectError) as unary:
            await client.list_runs(list_request())
        assert unary.value.code == Code.UNAUTHENTICATED
        with pytest.raises(ConnectError) as streamed:
            await asyncio.wait_for(anext(client.watch_runs(watch_request())), READ)
        assert streamed.value.code == Code.UNAUTHENTICATED
        wrong = {"authorization": "Bearer guess"}
        with pytest.raises(ConnectError) as guessed:
            await client.list_runs(list_request(), headers=wrong)
        assert guessed.value.code == Code.UNAUTHENTICATED

        good = {"authorization": "Bearer s3cret"}
        answer = await client.list_runs(list_request(), headers=good)
        assert names(answer.runs) == ["r1"]
        stream = client.watch_runs(watch_request(), headers=good)
        assert await next_message(stream) == ["r1"]
        await stream.aclose()

        # Discovery is open, as the SDK needs it before it has a token.
        auth = AuthMetadataServiceClient(plane.endpoint)
        config = await auth.get_public_client_config(
            auth_service_pb2.GetPublicClientConfigRequest()
        )
        assert config.authorization_metadata_key == "authorization"

        refused = [call for call in plane.calls if call.refused]
        assert [call.method for call in refused] == ["ListRuns", "WatchRuns", "ListRuns"]
        assert refused[2].headers["authorization"] == "Bearer guess"
        assert [c.method for c in plane.calls if not c.refused] == [
            "ListRuns",
            "WatchRuns",
            "GetPublicClientConfig",
        ]


async def test_a_run_created_but_never_started_is_queued(plane: Flyte2Plane) -> None:
    run = plane.start_run(PROJECT, DOMAIN, "r1", phase=None)
    answer = await RunServiceClient(plane.endpoint).list_runs(list_request())
    assert names(answer.runs) == ["r1"]
    assert answer.runs[0].action.status.phase == QUEUED
    assert plane.phase_of(run) == QUEUED


async def test_the_plane_can_speak_tls() -> None:
    with Flyte2Plane(tls=True) as plane:
        plane.start_run(PROJECT, DOMAIN, "r1")
        assert plane.endpoint.startswith("https://127.0.0.1:")
        trusting = pyqwest.Client(
            pyqwest.HTTPTransport(tls_ca_cert=default_ca().ca.cert_pem.bytes())
        )
        client = RunServiceClient(plane.endpoint, http_client=trusting)
        answer = await client.list_runs(list_request())
        assert names(answer.runs) == ["r1"]
        stream = client.watch_runs(watch_request())
        assert await next_message(stream) == ["r1"]
        await stream.aclose()


async def test_discovery_advertises_a_token_endpoint_and_issued_tokens_are_taken() -> None:
    token_url = "http://127.0.0.1:9/oauth2/token"
    with Flyte2Plane(requires_auth=True, token_endpoint=token_url) as plane:
        metadata = await AuthMetadataServiceClient(plane.endpoint).get_o_auth2_metadata(
            auth_service_pb2.GetOAuth2MetadataRequest()
        )
        assert metadata.token_endpoint == token_url
        client = RunServiceClient(plane.endpoint)
        issued = {"authorization": "Bearer issued-1"}
        with pytest.raises(ConnectError) as before:
            await client.list_runs(list_request(), headers=issued)
        assert before.value.code == Code.UNAUTHENTICATED
        plane.accept_token("issued-1")  # as TokenEndpoint does when it issues one
        answer = await client.list_runs(list_request(), headers=issued)
        assert names(answer.runs) == []

    with Flyte2Plane() as open_plane:  # no token endpoint: the server's UNIMPLEMENTED
        with pytest.raises(ConnectError) as unset:
            await AuthMetadataServiceClient(open_plane.endpoint).get_o_auth2_metadata(
                auth_service_pb2.GetOAuth2MetadataRequest()
            )
        assert unset.value.code == Code.UNIMPLEMENTED


# -- answering a condition ------------------------------------------------------------------


async def test_a_condition_signalled_with_the_sdk_succeeds_once(plane: Flyte2Plane) -> None:
    run = plane.start_run(PROJECT, DOMAIN, "r-gate")
    approval = plane.pause(run, prompt="Ship?", data_type=bool)
    count = plane.pause(run, condition="replicas", prompt="How many?", data_type=int)

    plane.signal_with_sdk(approval, True)  # flyte.remote.Condition.signal builds the request
    plane.signal_with_sdk(approval, True)  # the same value again: fine (idempotent)
    assert plane.phase_of(run, approval.name) == SUCCEEDED
    assert plane.signal_of(approval).scalar.primitive.boolean is True

    client = RunServiceClient(plane.endpoint)
    answer = await client.get_action_details(
        run_service_pb2.GetActionDetailsRequest(action_id=approval.identifier())
    )
    assert answer.details.signal_info.output.scalar.primitive.boolean is True

    with pytest.raises(ConnectError) as other:
        plane.signal_with_sdk(approval, False)
    assert other.value.code == Code.FAILED_PRECONDITION
    assert "already signalled with a different value" in other.value.message
    with pytest.raises(ConnectError) as typed:
        plane.signal_with_sdk(count, "three")
    assert typed.value.code == Code.INVALID_ARGUMENT
    assert "does not match declared condition type INTEGER" in typed.value.message
    plane.resume(count, FAILED)  # timed out
    with pytest.raises(ConnectError) as ended:
        plane.signal_with_sdk(count, 3)
    assert ended.value.code == Code.FAILED_PRECONDITION
    assert "already completed" in ended.value.message


async def test_signalling_what_is_no_condition_is_refused(plane: Flyte2Plane) -> None:
    run = plane.start_run(PROJECT, DOMAIN, "r-nocond")
    client = RunServiceClient(plane.endpoint)
    payload = run_service_pb2.EventPayload(bool_value=True)
    root = identifier_pb2.ActionIdentifier(run=run.identifier(), name="a0")
    missing = identifier_pb2.ActionIdentifier(run=run.identifier(), name="nope")
    with pytest.raises(ConnectError) as task:
        await client.signal_event(
            run_service_pb2.SignalEventRequest(action_id=root, payload=payload)
        )
    assert task.value.code == Code.FAILED_PRECONDITION
    with pytest.raises(ConnectError) as unknown:
        await client.signal_event(
            run_service_pb2.SignalEventRequest(action_id=missing, payload=payload)
        )
    assert unknown.value.code == Code.NOT_FOUND
    with pytest.raises(ConnectError) as empty:
        await client.signal_event(run_service_pb2.SignalEventRequest(action_id=root))
    assert empty.value.code == Code.INVALID_ARGUMENT
