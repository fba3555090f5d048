"""Small builders shared by the engine and service tests."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from flytenotify.domain import EntityId, ExecutionId

PLAN = EntityId("proj", "prod", "nightly", "v1")


def event_json(
    name: str,
    phase: str,
    *,
    error: str | None = None,
    project: str = "proj",
    domain: str = "prod",
    launch_plan: EntityId | None = None,
) -> dict[str, Any]:
    """A WorkflowExecutionEvent in the protobuf JSON mapping."""
    event: dict[str, Any] = {
        "executionId": {"project": project, "domain": domain, "name": name},
        "producerId": "propeller",
        "phase": phase,
        "occurredAt": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
    }
    if error is not None:
        event["error"] = {"code": "USER:Error", "message": error, "kind": "USER"}
    if launch_plan is not None:
        event["launch_plan"] = {
            "project": launch_plan.project,
            "domain": launch_plan.domain,
            "name": launch_plan.name,
            "version": launch_plan.version,
        }
    return event


def execution(name: str, project: str = "proj", domain: str = "prod") -> ExecutionId:
    return ExecutionId(project, domain, name)
