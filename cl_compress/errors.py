"""User-facing errors: each says what is wrong and how to fix it. The command line
prints them without a traceback and exits with status 2, before any training."""


class UserError(Exception):
    """Base of every error caused by input (config, data, checkpoint), not by a bug."""


class ConfigError(UserError, ValueError):
    """Unknown name or out-of-range hyper-parameter."""


class DataError(UserError, RuntimeError):
    """A data source is missing, unreadable or inconsistent."""


class CheckpointError(UserError, RuntimeError):
    """A checkpoint is missing, truncated or incompatible."""


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or infinite (raised by :mod:`cl_compress.engine.system`)."""
