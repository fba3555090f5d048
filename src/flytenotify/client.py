"""A Python client for the flytenotify HTTP API, and ``watch`` for any Python job.

    from flytenotify.client import Client

    client = Client("http://127.0.0.1:8080", token=None)
    client.register_launch_plan("proj", "prod", "nightly", "v1", [Email([P.FAILED], ["ops@x.com"])])
    with client.watch(project="proj", domain="prod", launch_plan="nightly", timeout=3600):
        run_the_job()

:class:`Client` is synchronous (httpx); :class:`AsyncClient` offers the same
calls with ``await``. Every answer other than 2xx raises :class:`ClientError`
with the status and the API's problems.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import uuid
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from types import FrameType, TracebackType
from typing import Any, Self

import httpx

from flytenotify.domain import EntityId

log = logging.getLogger("flytenotify.client")

TERMINAL = ("SUCCEEDED", "FAILED", "ABORTED", "TIMED_OUT")

LaunchPlanRef = EntityId | Mapping[str, str] | str


class ClientError(Exception):
    """The service answered with an error (``status``), or could not be reached (``status`` 0)."""

    def __init__(self, status: int, error: str, problems: list[dict[str, str]] | None = None):
        self.status = status
        self.error = error
        self.problems = problems or []
        detail = "; ".join(f"{p.get('field', '')}: {p.get('message', '')}" for p in self.problems)
        super().__init__(f"{status} {error}" + (f" ({detail})" if detail else ""))


# -- building requests (shared by both clients) -------------------------------------


def parse_launch_plan(ref: LaunchPlanRef, project: str = "", domain: str = "") -> dict[str, str]:
    """``EntityId``, a mapping, ``"p/d/n[@v]"`` or a bare ``"name[@v]"`` (in project/domain)."""
    if isinstance(ref, EntityId):
        return {
            "project": ref.project,
            "domain": ref.domain,
            "name": ref.name,
            "version": ref.version,
        }
    if isinstance(ref, Mapping):
        return {k: str(v) for k, v in ref.items()}
    path, _, version = ref.partition("@")
    parts = path.split("/")
    if len(parts) == 1:
        parts = [project, domain, parts[0]]
    if len(parts) != 3 or not all(parts):
        raise ValueError(f"a launch plan is project/domain/name[@version] or name, got {ref!r}")
    return {"project": parts[0], "domain": parts[1], "name": parts[2], "version": version}


def notifications_json(notifications: Iterable[Any] | None) -> list[Any]:
    """Our notification objects (or anything with ``to_dict``) or their JSON form."""
    return [n.to_dict() if hasattr(n, "to_dict") else n for n in notifications or ()]


def make_event(
    project: str,
    domain: str,
    name: str,
    phase: str,
    *,
    error: str | None = None,
    error_code: str | None = None,
    error_kind: str = "USER",
    launch_plan: LaunchPlanRef | None = None,
    occurred_at: datetime | None = None,
) -> dict[str, Any]:
    """A WorkflowExecutionEvent in the protobuf JSON mapping."""
    moment = occurred_at or datetime.now(UTC)
    event: dict[str, Any] = {
        "executionId": {"project": project, "domain": domain, "name": name},
        "phase": phase,
        "producerId": "flytenotify-client",
        "occurredAt": moment.astimezone(UTC).isoformat().replace("+00:00", "Z"),
    }
    if error is not None:
        event["error"] = {"code": error_code or "Error", "message": error, "kind": error_kind}
    if launch_plan is not None:
        event["launch_plan"] = parse_launch_plan(launch_plan, project, domain)
    return event


def _execution_body(
    project: str,
    domain: str,
    name: str,
    launch_plan: LaunchPlanRef | None,
    notifications: Iterable[Any] | None,
    disable_all: bool,
) -> dict[str, Any]:
    body: dict[str, Any] = {"id": {"project": project, "domain": domain, "name": name}}
    if launch_plan is not None:
        body["launch_plan"] = parse_launch_plan(launch_plan, project, domain)
    if notifications is not None:
        body["notifications"] = notifications_json(notifications)
    if disable_all:
        body["disable_all"] = True
    return body


def _event_body(event: Mapping[str, Any] | None, fields: dict[str, Any]) -> dict[str, Any]:
    if event is not None:
        return dict(event)
    return make_event(**fields)


def _filters(filters: Mapping[str, Any]) -> dict[str, str]:
    return {k: str(v) for k, v in filters.items() if v is not None}


def _answer(response: httpx.Response) -> Any:
    if response.is_success:
        return response.json()
    try:
        body = response.json()
    except ValueError:
        body = {}
    if not isinstance(body, dict):
        body = {}
    raise ClientError(
        response.status_code,
        str(body.get("error") or response.reason_phrase),
        list(body.get("problems") or []),
    )


def _headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


def _actions_path(project: str, domain: str, name: str) -> str:
    return f"/api/v1/executions/{project}/{domain}/{name}/actions"


def _action_body(action: str, signal_id: str, value: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"action": action}
    if signal_id:
        body["signal_id"] = signal_id
    if value is not None:
        body["value"] = value
    return body


def _lp_path(project: str, domain: str, name: str) -> str:
    return f"/api/v1/launch-plans/{project}/{domain}/{name}"


# -- the clients ----------------------------------------------------------------------


class Client:
    """Synchronous client. Use as a context manager, or call :meth:`close`."""

    def __init__(self, base_url: str, token: str | None = None, timeout: float = 10) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.Client(base_url=self.base_url, headers=_headers(token), timeout=timeout)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._http.close()

    def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = self._http.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise ClientError(0, f"cannot reach {self.base_url}: {error}") from error
        return _answer(response)

    def register_launch_plan(
        self, project: str, domain: str, name: str, version: str, notifications: Iterable[Any]
    ) -> dict[str, Any]:
        body = {"version": version, "notifications": notifications_json(notifications)}
        result: dict[str, Any] = self._call("PUT", _lp_path(project, domain, name), json=body)
        return result

    def launch_plan(self, project: str, domain: str, name: str) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", _lp_path(project, domain, name))
        return result

    def act(
        self,
        project: str,
        domain: str,
        name: str,
        action: str,
        signal_id: str = "",
        value: bool | int | float | str | None = None,
    ) -> dict[str, Any]:
        """Approve, reject or signal a gate, relaunch, recover or abort an execution: the
        recorded action (``outcome`` done, answered...)."""
        body = _action_body(action, signal_id, value)
        result: dict[str, Any] = self._call("POST", _actions_path(project, domain, name), json=body)
        return result

    def actions(self, project: str, domain: str, name: str) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = self._call("GET", _actions_path(project, domain, name))[
            "items"
        ]
        return result

    def create_execution(
        self,
        project: str,
        domain: str,
        name: str,
        launch_plan: LaunchPlanRef | None = None,
        notifications: Iterable[Any] | None = None,
        disable_all: bool = False,
    ) -> dict[str, Any]:
        body = _execution_body(project, domain, name, launch_plan, notifications, disable_all)
        result: dict[str, Any] = self._call("POST", "/api/v1/executions", json=body)
        return result

    def send_event(self, event: Mapping[str, Any] | None = None, **fields: Any) -> dict[str, Any]:
        """One event: a mapping, or :func:`make_event`'s keywords (project, domain, name...)."""
        result: dict[str, Any] = self._call(
            "POST", "/api/v1/events", json=_event_body(event, fields)
        )
        return result

    def send_events(self, batch: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        answer = self._call("POST", "/api/v1/events:batch", json=[dict(e) for e in batch])
        results: list[dict[str, Any]] = answer["results"]
        return results

    def deliveries(self, **filters: Any) -> list[dict[str, Any]]:
        """One page: execution, status, channel, since, cursor, limit."""
        items: list[dict[str, Any]] = self._call(
            "GET", "/api/v1/deliveries", params=_filters(filters)
        )["items"]
        return items

    def delivery(self, delivery_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self._call("GET", f"/api/v1/deliveries/{delivery_id}")
        return result

    def retry(self, delivery_id: int) -> dict[str, Any]:
        result: dict[str, Any] = self._call("POST", f"/api/v1/deliveries/{delivery_id}/retry")
        return result

    def inbox(self, cursor: int | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        params = _filters({"cursor": cursor, "limit": limit})
        items: list[dict[str, Any]] = self._call("GET", "/api/v1/inbox", params=params)["items"]
        return items

    def watch(
        self,
        *,
        project: str,
        domain: str,
        name: str | None = None,
        launch_plan: LaunchPlanRef | None = None,
        notifications: Iterable[Any] | None = None,
        timeout: float | None = None,
    ) -> Watch:
        """Report a Python job as an execution; a context manager and a decorator."""
        return Watch(
            self,
            project=project,
            domain=domain,
            name=name,
            launch_plan=launch_plan,
            notifications=None if notifications is None else list(notifications),
            timeout=timeout,
        )


class AsyncClient:
    """:class:`Client`'s calls with ``await``, on ``httpx.AsyncClient``."""

    def __init__(self, base_url: str, token: str | None = None, timeout: float = 10) -> None:
        self.base_url = base_url.rstrip("/")
        self._http = httpx.AsyncClient(
            base_url=self.base_url, headers=_headers(token), timeout=timeout
        )

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    async def _call(self, method: str, path: str, **kwargs: Any) -> Any:
        try:
            response = await self._http.request(method, path, **kwargs)
        except httpx.HTTPError as error:
            raise ClientError(0, f"cannot reach {self.base_url}: {error}") from error
        return _answer(response)

    async def register_launch_plan(
        self, project: str, domain: str, name: str, version: str, notifications: Iterable[Any]
    ) -> dict[str, Any]:
        body = {"version": version, "notifications": notifications_json(notifications)}
        result: dict[str, Any] = await self._call("PUT", _lp_path(project, domain, name), json=body)
        return result

    async def launch_plan(self, project: str, domain: str, name: str) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("GET", _lp_path(project, domain, name))
        return result

    async def act(
        self,
        project: str,
        domain: str,
        name: str,
        action: str,
        signal_id: str = "",
        value: bool | int | float | str | None = None,
    ) -> dict[str, Any]:
        body = _action_body(action, signal_id, value)
        path = _actions_path(project, domain, name)
        result: dict[str, Any] = await self._call("POST", path, json=body)
        return result

    async def actions(self, project: str, domain: str, name: str) -> list[dict[str, Any]]:
        found = await self._call("GET", _actions_path(project, domain, name))
        result: list[dict[str, Any]] = found["items"]
        return result

    async def create_execution(
        self,
        project: str,
        domain: str,
        name: str,
        launch_plan: LaunchPlanRef | None = None,
        notifications: Iterable[Any] | None = None,
        disable_all: bool = False,
    ) -> dict[str, Any]:
        body = _execution_body(project, domain, name, launch_plan, notifications, disable_all)
        result: dict[str, Any] = await self._call("POST", "/api/v1/executions", json=body)
        return result

    async def send_event(
        self, event: Mapping[str, Any] | None = None, **fields: Any
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self._call(
            "POST", "/api/v1/events", json=_event_body(event, fields)
        )
        return result

    async def send_events(self, batch: Iterable[Mapping[str, Any]]) -> list[dict[str, Any]]:
        answer = await self._call("POST", "/api/v1/events:batch", json=[dict(e) for e in batch])
        results: list[dict[str, Any]] = answer["results"]
        return results

    async def deliveries(self, **filters: Any) -> list[dict[str, Any]]:
        answer = await self._call("GET", "/api/v1/deliveries", params=_filters(filters))
        items: list[dict[str, Any]] = answer["items"]
        return items

    async def delivery(self, delivery_id: int) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("GET", f"/api/v1/deliveries/{delivery_id}")
        return result

    async def retry(self, delivery_id: int) -> dict[str, Any]:
        result: dict[str, Any] = await self._call("POST", f"/api/v1/deliveries/{delivery_id}/retry")
        return result

    async def inbox(
        self, cursor: int | None = None, limit: int | None = None
    ) -> list[dict[str, Any]]:
        params = _filters({"cursor": cursor, "limit": limit})
        answer = await self._call("GET", "/api/v1/inbox", params=params)
        items: list[dict[str, Any]] = answer["items"]
        return items


# -- watch ------------------------------------------------------------------------------


class Watch(contextlib.ContextDecorator):
    """One watched run of a job: created on entry, its terminal phase reported on exit.

    SUCCEEDED on a normal exit; FAILED (code: the exception's class name, kind
    USER) on an exception, which is re-raised; ABORTED on KeyboardInterrupt or
    SIGTERM; TIMED_OUT from a timer thread once ``timeout`` seconds pass (the
    job goes on). Only the first terminal phase is reported. A service that is
    down or answers with an error is logged as a warning and never breaks the job.
    As a decorator, every call is a new execution.
    """

    def __init__(
        self,
        client: Client,
        *,
        project: str,
        domain: str,
        name: str | None,
        launch_plan: LaunchPlanRef | None,
        notifications: list[Any] | None,
        timeout: float | None,
    ) -> None:
        self.client = client
        self.project = project
        self.domain = domain
        self._given_name = name
        self.name = name or _generated_name()
        self.launch_plan = launch_plan
        self.notifications = notifications
        self.timeout = timeout
        self.phase: str | None = None  # the terminal phase reported (or attempted)
        self._lock = threading.Lock()
        self._timer: threading.Timer | None = None
        self._previous_sigterm: Any = None
        self._sigterm_installed = False

    def _recreate_cm(self) -> Self:
        return type(self)(
            self.client,
            project=self.project,
            domain=self.domain,
            name=self._given_name,
            launch_plan=self.launch_plan,
            notifications=self.notifications,
            timeout=self.timeout,
        )

    def __enter__(self) -> Self:
        self._safely(
            "create the execution",
            lambda: self.client.create_execution(
                self.project, self.domain, self.name, self.launch_plan, self.notifications
            ),
        )
        if self.timeout is not None:
            self._timer = threading.Timer(self.timeout, self._timed_out)
            self._timer.daemon = True
            self._timer.start()
        if threading.current_thread() is threading.main_thread():
            self._previous_sigterm = signal.getsignal(signal.SIGTERM)
            signal.signal(signal.SIGTERM, self._on_sigterm)
            self._sigterm_installed = True
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._restore_sigterm()
        if exc is None:
            self._finish("SUCCEEDED")
        elif isinstance(exc, KeyboardInterrupt):
            self._finish("ABORTED")
        else:
            self._finish("FAILED", error=str(exc) or type(exc).__name__, code=type(exc).__name__)
        # Returning None re-raises the job's own exception.

    def _restore_sigterm(self) -> None:
        if self._sigterm_installed:
            self._sigterm_installed = False
            signal.signal(signal.SIGTERM, self._previous_sigterm)

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        self._finish("ABORTED")
        previous = self._previous_sigterm
        self._restore_sigterm()
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:
            signal.raise_signal(signal.SIGTERM)  # what would have happened without us
        # SIG_IGN: the job goes on, as it would have.

    def _timed_out(self) -> None:
        self._finish("TIMED_OUT", error=f"the job ran longer than {self.timeout:g} s")

    def _finish(self, phase: str, error: str | None = None, code: str | None = None) -> None:
        with self._lock:
            if self.phase is not None:
                return
            self.phase = phase
        event = make_event(
            self.project,
            self.domain,
            self.name,
            phase,
            error=error,
            error_code=code or ("Timeout" if phase == "TIMED_OUT" else None),
            launch_plan=self.launch_plan,
        )
        self._safely(f"report {phase}", lambda: self.client.send_event(event))

    def _safely(self, what: str, call: Any) -> None:
        try:
            call()
        except Exception as error:  # the job must never break because of us
            log.warning(
                "flytenotify: could not %s for %s/%s/%s: %s",
                what,
                self.project,
                self.domain,
                self.name,
                error,
            )


def _generated_name() -> str:
    return "py-" + uuid.uuid4().hex[:16]
