"""The package version, in one place (read by provenance attrs and the CLI)."""

__version__ = "0.1.0"
