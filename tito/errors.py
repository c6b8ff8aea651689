"""Errors raised by tito; the CLI turns them into a message on stderr and an exit code."""


class TitoError(Exception):
    """A user-facing error: ``str(err)`` is the message, ``exit_code`` what the CLI returns."""

    exit_code = 1

    def __init__(self, message: str, exit_code: int | None = None):
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class UnknownModuleError(TitoError):
    """A module number that is malformed or not in the manifest (exit code 2, like a usage error)."""

    exit_code = 2


class ManifestError(TitoError):
    """``modules/manifest.toml`` is missing or inconsistent."""

    exit_code = 2
