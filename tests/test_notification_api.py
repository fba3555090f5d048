"""The configuration API: flytekit parity and the stricter rules of the seed."""

from __future__ import annotations

import pytest
from flyteidl.admin import common_pb2, execution_pb2, launch_plan_pb2

from flytenotify import (
    Email,
    Notification,
    NotificationConfigError,
    PagerDuty,
    Slack,
    WorkflowExecutionPhase,
)
from flytenotify.models import common as models
from flytenotify.wire import (
    execution_overrides,
    launch_plan_notifications,
    with_execution_overrides,
    with_launch_plan_notifications,
)

P = WorkflowExecutionPhase


def test_phase_constants_and_names() -> None:
    names = ["UNDEFINED", "QUEUED", "RUNNING", "SUCCEEDING", "SUCCEEDED"]
    names += ["FAILING", "FAILED", "ABORTED", "TIMED_OUT", "ABORTING"]
    assert [getattr(P, n) for n in names] == list(range(10))
    assert P.enum_to_string(4) == "SUCCEEDED"
    assert P.enum_to_string(8) == "TIMED_OUT"
    assert P.enum_to_string(42) == "42"
    assert Notification.VALID_PHASES == {4, 6, 7, 8}


def test_equality_across_classes_follows_the_wire_form() -> None:
    email = Email([P.SUCCEEDED], ["x"])
    assert email == Notification([P.SUCCEEDED], email=models.EmailNotification(["x"]))
    assert email == models.Notification([4], email=models.EmailNotification(["x"]))
    assert email != Slack([P.SUCCEEDED], ["x"])
    assert Email([4, 6], ["x"]) != Email([6, 4], ["x"])  # order matters, as in flytekit
    assert hash(email) == hash(Email([4], ["x"]))
    assert repr(email) == str(email.to_flyte_idl())


@pytest.mark.parametrize(
    ("recipients", "shown"),
    [
        ("ops@example.com", "'ops@example.com'"),
        (None, "None"),
        ([], "must not be empty"),
        ([""], "''"),
        (["ok@example.com", "   "], "'   '"),
        (["ok@example.com", 7], "7"),
    ],
)
def test_bad_recipients_are_refused_naming_field_and_value(recipients: object, shown: str) -> None:
    for cls in (Email, Slack, PagerDuty):
        with pytest.raises(NotificationConfigError) as caught:
            cls([P.FAILED], recipients)  # type: ignore[arg-type]
        assert isinstance(caught.value, AssertionError)
        assert "recipients_email" in str(caught.value)
        assert shown in str(caught.value)


def test_bare_string_recipient_suggests_a_list() -> None:
    with pytest.raises(AssertionError, match=r"bare string 'ops@example.com'; write \['ops@"):
        Email([P.FAILED], "ops@example.com")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("phases", "field", "shown"),
    [
        (6, "phases", "6"),
        ("FAILED", "phases", "'FAILED'"),
        ([6, "FAILED"], "phases[1]", "'FAILED'"),
        ([6, None], "phases[1]", "None"),
        ([True], "phases[0]", "True"),
    ],
)
def test_bad_phase_shapes_are_refused_clearly(phases: object, field: str, shown: str) -> None:
    with pytest.raises(NotificationConfigError) as caught:
        Email(phases, ["x@example.com"])  # type: ignore[arg-type]
    assert caught.value.field == field
    assert shown in str(caught.value)


def test_phase_errors_come_before_recipient_errors_like_flytekit() -> None:
    with pytest.raises(AssertionError, match="Invalid phase: 2"):
        Email([2], [])


def test_invalid_phase_error_names_its_position() -> None:
    with pytest.raises(NotificationConfigError) as caught:
        Slack([4, 6, 3], ["#a"])
    assert str(caught.value) == (
        "Invalid phase: 3. only terminal states are permitted for notifications"
    )
    assert caught.value.field == "phases[2]"


def test_notification_needs_exactly_one_channel() -> None:
    with pytest.raises(AssertionError, match="needs one channel"):
        Notification([4])
    with pytest.raises(AssertionError, match="exactly one channel, got email, slack"):
        Notification(
            [4], email=models.EmailNotification(["a"]), slack=models.SlackNotification(["b"])
        )


def test_from_flyte_idl_gives_back_the_right_class() -> None:
    for cls in (Email, Slack, PagerDuty):
        original = cls([P.FAILED, P.TIMED_OUT], ["a@example.com", "#b"])
        back = cls.from_flyte_idl(original.to_flyte_idl())
        assert type(back) is cls
        assert back == original
        assert type(Notification.from_flyte_idl(original.to_flyte_idl())) is cls
        assert type(models.Notification.from_flyte_idl(original.to_flyte_idl())) is (
            models.Notification
        )


def test_from_flyte_idl_validates_like_the_constructor() -> None:
    running = common_pb2.Notification(
        phases=[P.RUNNING], email=common_pb2.EmailNotification(recipients_email=["a"])
    )
    with pytest.raises(AssertionError, match="Invalid phase: 2"):
        Email.from_flyte_idl(running)
    # The plain model, like flytekit's, carries whatever the wire holds.
    assert models.Notification.from_flyte_idl(running).phases == [P.RUNNING]
    with pytest.raises(AssertionError, match="Slack expects a slack notification, got email"):
        Slack.from_flyte_idl(Email([4], ["a"]).to_flyte_idl())


def test_template_is_exposed_and_survives_round_trips() -> None:
    email = Email([P.FAILED], ["a@example.com"], template="{{ name }} broke")
    assert email.template == "{{ name }} broke"
    assert email.to_flyte_idl().email.template == "{{ name }} broke"
    assert Email.from_flyte_idl(email.to_flyte_idl()).template == "{{ name }} broke"
    assert Notification.from_dict(email.to_dict()).template == "{{ name }} broke"
    assert email != Email([P.FAILED], ["a@example.com"])


def test_json_form_is_protobuf_canonical_json() -> None:
    pd = PagerDuty([P.FAILED, P.TIMED_OUT], ["svc@example.com"])
    assert pd.to_dict() == {
        "phases": ["FAILED", "TIMED_OUT"],
        "pagerDuty": {"recipientsEmail": ["svc@example.com"]},
    }


@pytest.mark.parametrize(
    "data",
    [
        {"phases": ["FAILED", "TIMED_OUT"], "pagerDuty": {"recipientsEmail": ["s@x"]}},
        {"phases": [6, 8], "pager_duty": {"recipients_email": ["s@x"]}},
        {"phases": ["failed", 8], "pagerDuty": {"recipients_email": ["s@x"]}},
    ],
)
def test_json_reading_accepts_both_spellings(data: dict[str, object]) -> None:
    parsed = Notification.from_dict(data)
    assert type(parsed) is PagerDuty
    assert parsed == PagerDuty([6, 8], ["s@x"])
    assert PagerDuty.from_dict(data) == parsed


def test_json_reading_reports_every_problem() -> None:
    with pytest.raises(NotificationConfigError) as caught:
        Notification.from_dict(
            {"phases": ["RUNNNG", True], "email": {"recipientsEmail": "a@x", "cc": 1}, "x": 0}
        )
    fields = [p.field for p in caught.value.problems]
    assert fields == ["x", "phases[0]", "phases[1]", "email.cc", "email.recipients_email"]


def test_json_reading_validates_terminal_phases() -> None:
    with pytest.raises(AssertionError, match="Invalid phase: 2"):
        Notification.from_dict({"phases": ["RUNNING"], "slack": {"recipients_email": ["#a"]}})
    with pytest.raises(NotificationConfigError, match="needs one channel"):
        Notification.from_dict({"phases": ["FAILED"]})


def test_launch_plan_helpers_round_trip() -> None:
    spec = launch_plan_pb2.LaunchPlanSpec()
    spec.workflow_id.name = "wf"
    notes = [Email([P.FAILED], ["a@x"]), Slack([P.SUCCEEDED], ["#b"]).to_flyte_idl()]
    written = with_launch_plan_notifications(spec, notes)
    assert len(spec.entity_metadata.notifications) == 0  # the input is untouched
    assert written.workflow_id.name == "wf"
    assert launch_plan_notifications(written) == [Email([6], ["a@x"]), Slack([4], ["#b"])]
    plan = launch_plan_pb2.LaunchPlan(spec=written)
    assert [type(n) for n in launch_plan_notifications(plan)] == [Email, Slack]


def test_launch_plan_helpers_accept_anything_with_to_flyte_idl() -> None:
    class FlytekitLike:
        def to_flyte_idl(self) -> common_pb2.Notification:
            return Email([P.ABORTED], ["c@x"]).to_flyte_idl()

    written = with_launch_plan_notifications(launch_plan_pb2.LaunchPlanSpec(), [FlytekitLike()])
    assert launch_plan_notifications(written) == [Email([P.ABORTED], ["c@x"])]


def test_launch_plan_reading_reports_the_bad_entry() -> None:
    spec = launch_plan_pb2.LaunchPlanSpec()
    spec.entity_metadata.notifications.add(
        phases=[4], email=common_pb2.EmailNotification(recipients_email=[])
    )
    with pytest.raises(NotificationConfigError) as caught:
        launch_plan_notifications(spec)
    assert caught.value.field == "spec.entity_metadata.notifications[0].email.recipients_email"


def test_execution_override_helpers() -> None:
    spec = execution_pb2.ExecutionSpec()
    assert execution_overrides(spec).notifications == ()
    assert not execution_overrides(spec).disable_all
    overridden = with_execution_overrides(spec, [PagerDuty([P.FAILED], ["svc"])])
    assert execution_overrides(overridden).notifications == (PagerDuty([6], ["svc"]),)
    disabled = with_execution_overrides(overridden, disable_all=True)
    assert disabled.WhichOneof("notification_overrides") == "disable_all"
    assert execution_overrides(disabled).disable_all
    assert execution_overrides(disabled).notifications == ()
    with pytest.raises(NotificationConfigError, match="disable_all"):
        with_execution_overrides(spec, [Email([4], ["a"])], disable_all=True)
