"""The OpenAPI 3.1 document served at ``GET /openapi.json``, generated.

Paths come from the route table (:data:`flytenotify.web.api.OPERATIONS`),
schemas from the pydantic models of :mod:`flytenotify.web.schemas` (requests as
they validate, responses as they serialise), and the shapes that mirror
flyteidl's JSON mapping from :mod:`flytenotify.web.flyteidl_json`. Nothing is
typed twice: a field, an enum value or a limit changed in its definition is
changed here. The property-based tests (tests/test_api_schemathesis.py) hold
the service to the document.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from flytenotify.channels import registry
from flytenotify.intake.limits import MAX_JSON_DEPTH
from flytenotify.web import flyteidl_json
from flytenotify.web import schemas as s

REF = "#/components/schemas/{model}"

_ERRORS = {
    400: "Invalid request; problems name each field",
    401: "Missing or wrong bearer token",
    403: "Not allowed: the caller's identity may not do this ([actions] in the configuration)",
    404: "Not found (an unknown delivery, or launch plan, also when a request names it)",
    409: "Conflict",
    413: "Body too large",
    415: "Unsupported Content-Type",
    502: "Flyte refused what was asked of it (its status code and words in the error);"
    " recorded as failed",
    503: "A service this depends on cannot answer now (FlyteAdmin, looking up an unknown"
    " execution; or the database at start-up, or full): nothing was recorded; send again"
    " after Retry-After seconds",
}
# Headers an error answer carries beside its body.
_ERROR_HEADERS = {
    401: {
        "WWW-Authenticate": {
            "description": 'Bearer realm="flytenotify", with error="invalid_token" when a'
            " token was given (RFC 6750)",
            "schema": {"type": "string"},
        }
    },
}


@dataclass(frozen=True)
class Operation:
    """One method of one route: what is routed, and what the document says of it.

    ``handler`` is the API's (it takes the API object and the request);
    ``answers`` map a status to its description and shape (a
    :class:`~flytenotify.web.schemas.Shape` class, a JSON Schema, ``{content type:
    schema}`` for another type than JSON, or None for no body); ``body`` maps each
    content type a request may have to its shape; ``errors`` are the 4xx and 5xx
    it may answer.
    """

    method: str
    path: str
    summary: str
    handler: Callable[[Any, Any], Awaitable[Any]]
    answers: Mapping[int, tuple[str, Any]]
    errors: tuple[int, ...] = ()
    body: Mapping[str, Any] | None = None
    query: type[s.Query] | None = None
    public: bool = False  # no token needed (the probes)
    path_params: Mapping[str, Any] = field(default_factory=dict)


def document(operations: Sequence[Operation]) -> dict[str, Any]:
    """The document of ``operations``, naming the channels the registry holds now."""
    components, models = _components(operations)
    paths: dict[str, dict[str, Any]] = {}
    for operation in operations:
        item = paths.setdefault(operation.path, {})
        item[operation.method.lower()] = _operation(operation, models)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "flytenotify",
            "version": "1",
            "description": "Notifications for Flyte workflow executions. See docs/http-api.md"
            f" (Limits: JSON nests at most {MAX_JSON_DEPTH} levels; identifiers and free text"
            " have length limits; numbers in paths and queries are ASCII digits up to 2**63-1).",
        },
        "components": {
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
            "schemas": components,
        },
        "security": [{"bearer": []}],
        "paths": paths,
    }


def _model_schemas(operations: Sequence[Operation]) -> tuple[dict[str, Any], dict[Any, Any]]:
    """Every model's schema, and each model's reference by (model, mode)."""
    wanted: list[tuple[type[BaseModel], Any]] = []
    for operation in operations:
        for _, shape in operation.answers.values():
            if _is_model(shape):
                wanted.append((shape, "serialization"))
        for shape in (operation.body or {}).values():
            if _is_model(shape):
                wanted.append((shape, "validation"))
    wanted.append((s.ErrorBody, "serialization"))
    refs, found = models_json_schema(list(dict.fromkeys(wanted)), ref_template=REF)
    defs: dict[str, Any] = found.get("$defs", {})
    return defs, dict(refs)


def _components(operations: Sequence[Operation]) -> tuple[dict[str, Any], dict[Any, Any]]:
    defs, refs = _model_schemas(operations)
    components = {**flyteidl_json.SCHEMAS, **defs}
    # Readiness names every channel the registry holds (a test may register one).
    names = registry.names()
    state = {"type": "string", "enum": ["configured", "dev-inbox", "unconfigured"]}
    components["Readiness"] = {
        **components["Readiness"],
        "properties": {
            **components["Readiness"]["properties"],
            "channels": {
                "type": "object",
                "required": names,
                "properties": dict.fromkeys(names, state),
                "additionalProperties": False,
            },
        },
    }
    return components, refs


def _is_model(shape: Any) -> bool:
    return isinstance(shape, type) and issubclass(shape, BaseModel)


def _operation(operation: Operation, models: dict[Any, Any]) -> dict[str, Any]:
    found: dict[str, Any] = {"summary": operation.summary}
    if operation.public:
        found["security"] = []
    parameters = _path_parameters(operation) + _query_parameters(operation)
    if parameters:
        found["parameters"] = parameters
    if operation.body:
        found["requestBody"] = {
            "required": True,
            "content": {
                kind: {"schema": _schema(shape, models, "validation")}
                for kind, shape in operation.body.items()
            },
        }
    responses: dict[str, Any] = {}
    for status, (description, shape) in operation.answers.items():
        responses[str(status)] = _answer(description, shape, models)
    for status in operation.errors:
        error = _answer(_ERRORS[status], s.ErrorBody, models)
        if status in _ERROR_HEADERS:
            error["headers"] = _ERROR_HEADERS[status]
        responses[str(status)] = error
    found["responses"] = responses
    return found


def _answer(description: str, shape: Any, models: dict[Any, Any]) -> dict[str, Any]:
    if shape is None:
        return {"description": description}
    if isinstance(shape, dict) and len(shape) == 1 and "/" in next(iter(shape)):
        ((kind, schema),) = shape.items()  # another content type than JSON
        return {"description": description, "content": {kind: {"schema": schema}}}
    schema = _schema(shape, models, "serialization")
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _schema(shape: Any, models: dict[Any, Any], mode: str) -> Any:
    if _is_model(shape):
        return models[(shape, mode)]
    return shape


def _path_parameters(operation: Operation) -> list[dict[str, Any]]:
    parameters = []
    for name, pattern in operation.path_params.items():
        schema = pattern if isinstance(pattern, dict) else {"type": "string", "pattern": pattern}
        parameters.append({"name": name, "in": "path", "required": True, "schema": schema})
    return parameters


def _query_parameters(operation: Operation) -> list[dict[str, Any]]:
    if operation.query is None:
        return []
    schema = operation.query.model_json_schema(ref_template=REF)
    parameters = []
    for name, prop in schema.get("properties", {}).items():
        prop = dict(prop)
        prop.pop("default", None)
        prop.pop("title", None)
        choices = prop.pop("anyOf", None)
        if choices is not None:  # "X or null": a query parameter is absent instead
            prop = next(c for c in choices if c.get("type") != "null")
        description = prop.pop("description", "")
        if name == "channel":
            description = ", ".join([*registry.names(), registry.INBOX, registry.UNROUTABLE])
        parameters.append(
            {
                "name": name,
                "in": "query",
                "required": False,
                "schema": prop,
                "description": description or name,
            }
        )
    return parameters
