"""The web console at ``/ui``: deliveries, executions, dead letters, launch plans, status."""

from flytenotify.web.console.routes import console_app

__all__ = ["console_app"]
