"""User-facing configuration classes mirroring ``flytekit.core``."""
