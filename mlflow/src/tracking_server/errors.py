"""The errors the entrypoint turns into one clear line and a non-zero exit."""


class SettingsError(ValueError):
    """A setting is missing or invalid; the message names the environment variable."""


class StartupError(RuntimeError):
    """A start-up step failed for a reason the operator can act on; the message says which."""
