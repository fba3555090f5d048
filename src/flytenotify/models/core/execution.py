"""Workflow execution phases, as ``flytekit.models.core.execution`` defines them."""

from __future__ import annotations

from flyteidl.core import execution_pb2


class WorkflowExecutionPhase:
    """Phases of a workflow execution: plain ``int`` constants, as in flytekit.

    The values come from ``flyteidl.core.WorkflowExecution.Phase`` so they can
    never drift from the wire format.
    """

    UNDEFINED: int = execution_pb2.WorkflowExecution.UNDEFINED
    QUEUED: int = execution_pb2.WorkflowExecution.QUEUED
    RUNNING: int = execution_pb2.WorkflowExecution.RUNNING
    SUCCEEDING: int = execution_pb2.WorkflowExecution.SUCCEEDING
    SUCCEEDED: int = execution_pb2.WorkflowExecution.SUCCEEDED
    FAILING: int = execution_pb2.WorkflowExecution.FAILING
    FAILED: int = execution_pb2.WorkflowExecution.FAILED
    ABORTED: int = execution_pb2.WorkflowExecution.ABORTED
    TIMED_OUT: int = execution_pb2.WorkflowExecution.TIMED_OUT
    ABORTING: int = execution_pb2.WorkflowExecution.ABORTING

    @classmethod
    def enum_to_string(cls, int_value: int) -> str:
        """``"SUCCEEDED"`` for 4; an unknown value gives ``str(value)``."""
        return _NAMES.get(int_value, str(int_value))


_NAMES: dict[int, str] = {
    value: name
    for name, value in vars(WorkflowExecutionPhase).items()
    if name.isupper() and isinstance(value, int)
}

# Phases after which an execution never changes again; the only ones a
# notification may name.
TERMINAL_PHASES: frozenset[int] = frozenset(
    {
        WorkflowExecutionPhase.SUCCEEDED,
        WorkflowExecutionPhase.FAILED,
        WorkflowExecutionPhase.ABORTED,
        WorkflowExecutionPhase.TIMED_OUT,
    }
)


def phase_from_name(name: str) -> int | None:
    """The phase called ``name`` (any case), or None when there is none."""
    for value, known in _NAMES.items():
        if known == name.upper():
            return value
    return None
