"""The tests' loopback FlyteAdmin (tests/servers/flyteadmin.py) in a process of its own.

flytenotify asks it ``AdminService.GetExecution`` for executions it has not
seen. It runs in a child process, as the sinks do, so its gRPC threads never
take the load generator's or the harness's time slices; the harness drives it
through a pipe: which executions it serves, and how many calls it answered.
"""

from __future__ import annotations

import contextlib
import multiprocessing
from multiprocessing.connection import Connection
from typing import Any

ANSWER_TIMEOUT = 60.0  # seconds the harness waits for the child's answer


def _child(conn: Connection, project: str, domain: str) -> None:
    # Imported here: only the child needs gRPC servers and flyteidl messages.
    from tests.servers.flyteadmin import FlyteAdminServer, admin_execution

    from flytenotify import Email, WorkflowExecutionPhase
    from flytenotify.domain import EntityId, ExecutionId

    launch_plan = EntityId(project, domain, "bench", "v1")
    workflow = EntityId(project, domain, "bench.workflow", "v1")
    # The bench's webhook, as the bench's registered launch plans name it.
    notify = [Email([WorkflowExecutionPhase.FAILED], ["webhook:bench"])]
    with FlyteAdminServer() as admin:
        conn.send(admin.endpoint)
        while True:
            command, argument = conn.recv()
            if command == "add":
                for name in argument:
                    execution_id = ExecutionId(project, domain, name)
                    admin.add(
                        admin_execution(
                            execution_id,
                            launch_plan=launch_plan,
                            workflow=workflow,
                            notifications=notify,
                        )
                    )
                conn.send(len(argument))
            elif command == "calls":
                conn.send(len(admin.calls))
            elif command == "stop":
                conn.send(True)
                return


class FlyteAdminProcess:
    """``with FlyteAdminProcess(project, domain) as admin: admin.endpoint``."""

    def __init__(self, project: str, domain: str) -> None:
        context = multiprocessing.get_context("spawn")  # a clean interpreter, as the sinks
        self._conn, child_conn = context.Pipe()
        self._process = context.Process(
            target=_child, args=(child_conn, project, domain), daemon=True
        )
        self.endpoint = ""

    def __enter__(self) -> FlyteAdminProcess:
        self._process.start()
        if not self._conn.poll(ANSWER_TIMEOUT):
            raise RuntimeError(f"the FlyteAdmin process did not start within {ANSWER_TIMEOUT} s")
        self.endpoint = str(self._conn.recv())
        return self

    def __exit__(self, *exc: object) -> None:
        if self._process.is_alive():
            with contextlib.suppress(RuntimeError, OSError, EOFError):
                self._ask("stop", None)
            self._process.join(10)
            if self._process.is_alive():
                self._process.terminate()
                self._process.join(5)

    @property
    def pid(self) -> int:
        return int(self._process.pid or 0)

    def _ask(self, command: str, argument: Any) -> Any:
        self._conn.send((command, argument))
        if not self._conn.poll(ANSWER_TIMEOUT):
            raise RuntimeError(f"the FlyteAdmin process did not answer {command!r}")
        return self._conn.recv()

    def add_executions(self, names: list[str]) -> None:
        """Serve these executions: FAILED notifies the bench webhook."""
        self._ask("add", names)

    def calls(self) -> int:
        """GetExecution calls answered so far."""
        return int(self._ask("calls", None))
