"""Schema migrations, one numbered ``.sql`` file each, applied in order.

The files are the source of truth for the schema: read them to see the tables.
A database whose version is newer than the newest file here is refused, so an
old replica never writes to a schema it does not understand.
"""

from __future__ import annotations

from importlib.resources import files

MIGRATIONS: dict[int, str] = {
    int(entry.name.split("_", 1)[0]): entry.read_text(encoding="utf-8")
    for entry in files(__name__).iterdir()
    if entry.name.endswith(".sql")
}
