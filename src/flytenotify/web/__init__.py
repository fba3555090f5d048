"""The HTTP face of flytenotify: the API, its OpenAPI document, and the web console.

Everything here is a thin layer over :class:`~flytenotify.app.Notifier`, the one
door every entry point goes through. ``schemas`` holds every shape the API
takes or returns (pydantic models: they validate requests, make responses and
generate ``/openapi.json``); ``api`` the routes; ``console`` the pages at ``/ui``.
"""
