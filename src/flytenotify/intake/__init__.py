"""Intake: every way an execution event reaches flytenotify.

``events`` normalises any accepted form into one ``ExecutionEvent``;
``cloudevents`` reads Flyte's CloudEvents on the HTTP API. ``source`` is what
the sources beside the API share; ``registry`` lists every kind of them, each
declared by an ``IntakeSpec`` (``nats_spec``, ``gcp_spec``, ``aws_spec`` for
the brokers FlyteAdmin can publish to, read by ``nats``, ``gcp`` and ``aws``
through ``egress``; ``flyte2_spec`` for Flyte 2's control plane, watched by
``flyte2``, whose runs ``flyte2_runs`` reads). Everything ends in the same
:class:`~flytenotify.app.Notifier`.
"""
