"""``[flyte2]``: the Flyte 2 control plane whose runs flytenotify watches, declared.

Besides the projects to watch (one :class:`~flytenotify.intake.flyte2.RunWatch`
each, imported only when configured), the section names the rules and
deliveries users' code may refer to by name, and is where runs' links point.
"""

from __future__ import annotations

from typing import Self

from pydantic import Field, field_validator, model_validator

from flytenotify.domain import RULE_PHASES, NamedKind, NamedRule
from flytenotify.intake.source import IntakeSpec, RecordingSource, run_recording
from flytenotify.sections import FlyteAuth, Section


def _scope_part(value: str) -> str:
    if value != value.strip() or "/" in value:
        raise ValueError(f"must be a project or domain name (no spaces or '/'), got {value!r}")
    return value


def _recipient_list(recipients: list[str]) -> list[str]:
    for i, recipient in enumerate(recipients):
        if not recipient.strip() or any(ord(c) < 0x20 or c == "\x7f" for c in recipient):
            raise ValueError(
                f"recipient {i} must be a non-empty name without control characters,"
                f" got {recipient!r}"
            )
    return recipients


class NamedDeliveryConfig(Section):
    """``[flyte2.deliveries.NAME]``: what ``NamedDelivery(name="NAME")`` means.

    The user's rule says when; this says to whom, in the recipient syntax
    notifications use (``#channel``, ``pagerduty:KEY``, ``webhook:NAME``,
    ``teams:NAME``, ``mattermost:NAME``, an email address). ``project`` and
    ``domain`` scope it (empty: every one).
    """

    recipients: list[str] = Field(min_length=1)
    project: str = ""
    domain: str = ""

    _recipients = field_validator("recipients")(_recipient_list)
    _scope = field_validator("project", "domain")(_scope_part)


class NamedRuleConfig(NamedDeliveryConfig):
    """``[flyte2.rules.NAME]``: what ``NamedRule("NAME")`` means: when and to whom.

    ``phases`` are ``SUCCEEDED``, ``FAILED``, ``ABORTED``, ``TIMED_OUT`` and
    ``PAUSED`` (an action waiting for a person's input), in any case.
    """

    phases: list[str] = Field(min_length=1)

    @field_validator("phases")
    @classmethod
    def _known_phases(cls, phases: list[str]) -> list[str]:
        named = [phase.upper() for phase in phases]
        for i, phase in enumerate(named):
            if phase not in RULE_PHASES:
                raise ValueError(
                    f"phase {i} must be one of {', '.join(RULE_PHASES)}, got {phases[i]!r}"
                )
        return named


class Flyte2Config(FlyteAuth):
    """``[flyte2]``: the Flyte 2 control plane whose runs flytenotify watches.

    ``endpoint`` is written as ``flyte.init(endpoint=...)`` takes it:
    ``dns:///flyte.example.com``, ``flyte.example.com:443`` or
    ``http(s)://host:port``. ``insecure`` means plaintext HTTP. ``projects``
    are the ``project/domain`` pairs to watch.
    """

    endpoint: str
    insecure: bool = False
    projects: list[str] = Field(default_factory=list)
    rules: dict[str, NamedRuleConfig] = Field(default_factory=dict)
    deliveries: dict[str, NamedDeliveryConfig] = Field(default_factory=dict)

    @field_validator("endpoint")
    @classmethod
    def _endpoint(cls, endpoint: str) -> str:
        host = _endpoint_host(endpoint)
        if not host or any(c.isspace() for c in endpoint):
            raise ValueError(
                "must be dns:///HOST[:PORT], HOST[:PORT] or http(s)://HOST[:PORT],"
                f" got {endpoint!r}"
            )
        return endpoint

    @field_validator("projects")
    @classmethod
    def _project_domain_pairs(cls, projects: list[str]) -> list[str]:
        for i, pair in enumerate(projects):
            project, slash, domain = pair.partition("/")
            if not slash or not project or not domain or "/" in domain or pair != pair.strip():
                raise ValueError(f"entry {i} must be PROJECT/DOMAIN, got {pair!r}")
        return list(dict.fromkeys(projects))

    @model_validator(mode="after")
    def _scheme_agrees(self) -> Self:
        if self.endpoint.startswith("https://") and self.insecure:
            raise ValueError("endpoint is https:// but insecure = true (plaintext); pick one")
        return self

    @property
    def base_url(self) -> str:
        """The URL the Connect client calls: ``http(s)://host[:port]``."""
        if self.endpoint.startswith(("http://", "https://")):
            return self.endpoint.rstrip("/")
        scheme = "http" if self.insecure else "https"
        return f"{scheme}://{_endpoint_host(self.endpoint)}"

    def named_entries(self) -> list[NamedRule]:
        """The file's named rules, then its named deliveries."""
        rules = [
            NamedRule(
                NamedKind.RULE,
                name,
                tuple(rule.recipients),
                frozenset(RULE_PHASES[phase] for phase in rule.phases),
                rule.project,
                rule.domain,
                source="config",
            )
            for name, rule in self.rules.items()
        ]
        deliveries = [
            NamedRule(
                NamedKind.DELIVERY,
                name,
                tuple(delivery.recipients),
                project=delivery.project,
                domain=delivery.domain,
                source="config",
            )
            for name, delivery in self.deliveries.items()
        ]
        return rules + deliveries

    @property
    def watched(self) -> list[tuple[str, str]]:
        """The (project, domain) pairs to watch."""
        return [(pair.partition("/")[0], pair.partition("/")[2]) for pair in self.projects]


def _endpoint_host(endpoint: str) -> str:
    """``host[:port]`` of an endpoint in any of the forms flyte.init takes."""
    for prefix in ("dns:///", "http://", "https://"):
        if endpoint.startswith(prefix):
            endpoint = endpoint.removeprefix(prefix)
            break
    return endpoint.rstrip("/") if "/" not in endpoint.rstrip("/") else ""


def _build(config: Flyte2Config) -> list[RecordingSource]:
    from flytenotify.controlplane import ControlPlane
    from flytenotify.intake.flyte2 import RunWatch

    return [RunWatch(ControlPlane(config), project, domain) for project, domain in config.watched]


# A watch makes the events of the runs it reads itself: it records them directly.
INTAKE: IntakeSpec[Flyte2Config, RecordingSource] = IntakeSpec(
    name="flyte2",
    section="flyte2",
    config=Flyte2Config,
    build=_build,
    run=run_recording,
)
