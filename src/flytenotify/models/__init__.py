"""Wire models mirroring ``flytekit.models``."""
