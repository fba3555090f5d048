"""Round trips and equality hold for every notification, not just examples."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from flytenotify import Email, Notification, PagerDuty, Slack
from flytenotify.models import common as models

recipients = st.lists(
    st.text(min_size=1, max_size=30).filter(lambda s: s.strip() != ""), min_size=1, max_size=5
)
phases = st.lists(st.sampled_from([4, 6, 7, 8]), min_size=1, max_size=6)
templates = st.none() | st.text(min_size=1, max_size=60)
notifications = st.builds(
    lambda cls, p, r, t: cls(p, r, template=t),
    st.sampled_from([Email, Slack, PagerDuty]),
    phases,
    recipients,
    templates,
)


@given(notifications)
def test_idl_round_trip(n: Notification) -> None:
    back = type(n).from_flyte_idl(n.to_flyte_idl())
    assert back == n
    assert type(back) is type(n)
    assert Notification.from_flyte_idl(n.to_flyte_idl()) == n


@given(notifications)
def test_bytes_round_trip(n: Notification) -> None:
    message = type(n.to_flyte_idl())()
    message.ParseFromString(n.serialize_to_string())
    assert type(n).from_flyte_idl(message) == n


@given(notifications)
def test_json_round_trip(n: Notification) -> None:
    back = Notification.from_dict(n.to_dict())
    assert back == n
    assert type(back) is type(n)


@given(notifications, notifications)
def test_equality_and_hash_agree(a: Notification, b: Notification) -> None:
    if a == b:
        assert hash(a) == hash(b)
    assert (a == b) == (a.serialize_to_string() == b.serialize_to_string())
    assert (a == b) != (a != b)


@given(notifications)
def test_model_and_user_classes_agree(n: Notification) -> None:
    model = models.Notification.from_flyte_idl(n.to_flyte_idl())
    assert model == n
    assert hash(model) == hash(n)
