"""Record flytekit_gates.json from the real flytekit 1.16.31: gate nodes and the answers to them.

Run it with flytekit installed in a throwaway virtualenv outside this
repository (it needs nothing but PyPI), as generate_golden.py is run:

    python3 -m venv /tmp/flytekit-venv
    /tmp/flytekit-venv/bin/pip install flytekit==1.16.31
    /tmp/flytekit-venv/bin/python tests/data/generate_gates.py

It writes what the tests of waiting-for-a-person and of the actions need
from flytekit itself, never typed by hand:

- ``workflow``: a workflow with ``approve()`` and one ``wait_for_input()`` of
  each simple type, serialized by flytekit (``core.WorkflowTemplate``, hex):
  its gate nodes say each signal's id and type, as FlytePropeller asks
  FlyteAdmin to create them (``GetOrCreateSignal``);
- ``requests``: the ``SignalSetRequest`` each of ``FlyteRemote.approve``,
  ``reject`` and ``set_signal`` sends for one execution (hex), the
  ``SignalListRequest`` of ``list_signals``, and the relaunch and recover
  requests of flytekit's client.
"""

from __future__ import annotations

import datetime
import json
from collections import OrderedDict
from pathlib import Path
from typing import Any

import flytekit
from flyteidl.admin import execution_pb2
from flytekit import approve, task, wait_for_input, workflow
from flytekit.configuration import Config, ImageConfig, SerializationSettings
from flytekit.models.core.identifier import WorkflowExecutionIdentifier
from flytekit.remote import FlyteRemote
from flytekit.tools.translator import get_serializable

OUT = Path(__file__).with_name("flytekit_gates.json")
PROJECT, DOMAIN, EXECUTION = "flytesnacks", "development", "f7a1c2e3b4d5e6f7a8b9"
HOUR = datetime.timedelta(hours=1)


@task
def build() -> int:
    return 1


@task
def deploy(build_id: int, note: str, replicas: int, ratio: float, go: bool) -> int:
    return build_id


@workflow
def release() -> int:
    built = build()
    approved = approve(built, "approve-deploy", timeout=2 * HOUR)
    note = wait_for_input("release-note", timeout=HOUR, expected_type=str)
    replicas = wait_for_input("replicas", timeout=HOUR, expected_type=int)
    ratio = wait_for_input("canary-ratio", timeout=HOUR, expected_type=float)
    go = wait_for_input("go-live", timeout=HOUR, expected_type=bool)
    return deploy(build_id=approved, note=note, replicas=replicas, ratio=ratio, go=go)


class Recorder:
    """Stands in for flytekit's gRPC client: keeps each request it is handed."""

    def __init__(self) -> None:
        self.sent: list[Any] = []

    def set_signal(self, request: Any) -> None:
        self.sent.append(request)

    def list_signals(self, request: Any) -> Any:
        self.sent.append(request)

        class Empty:
            signals: tuple[Any, ...] = ()

        return Empty()


def main() -> None:
    settings = SerializationSettings(
        ImageConfig.auto_default_image(), project=PROJECT, domain=DOMAIN, version="v1"
    )
    template = get_serializable(OrderedDict(), settings, release).template.to_flyte_idl()
    remote = FlyteRemote(Config.for_sandbox(), default_project=PROJECT, default_domain=DOMAIN)
    recorder = Recorder()
    remote._client = recorder  # what FlyteRemote.client hands out once made
    remote._client_initialized = True
    remote.approve("approve-deploy", EXECUTION)
    remote.reject("approve-deploy", EXECUTION)
    remote.set_signal("release-note", EXECUTION, "ship it")
    remote.set_signal("replicas", EXECUTION, 3)
    remote.set_signal("canary-ratio", EXECUTION, 0.25)
    remote.set_signal("go-live", EXECUTION, False)
    remote.list_signals(EXECUTION)
    said = ["approve", "reject", "note", "replicas", "ratio", "go-live", "list"]
    sent = zip(said, recorder.sent, strict=True)
    requests = {name: r.SerializeToString().hex() for name, r in sent}
    ident = WorkflowExecutionIdentifier(PROJECT, DOMAIN, EXECUTION).to_flyte_idl()
    requests["relaunch"] = (
        execution_pb2.ExecutionRelaunchRequest(id=ident).SerializeToString().hex()
    )
    requests["recover"] = execution_pb2.ExecutionRecoverRequest(id=ident).SerializeToString().hex()
    document = {
        "flytekit": flytekit.__version__,
        "execution": {"project": PROJECT, "domain": DOMAIN, "name": EXECUTION},
        "workflow": {"name": "release", "template": template.SerializeToString().hex()},
        "requests": requests,
    }
    OUT.write_text(json.dumps(document, indent=2, sort_keys=True) + "\n")
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
