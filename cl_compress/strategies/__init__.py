"""Strategy plugins: the API (``base``), the registry, and the built-in strategies."""

from cl_compress.strategies.base import (
    CompressionStats,
    ConfigError,
    Phase,
    Strategy,
    StrategyConfig,
    StreamInfo,
    TaskData,
    TrainSettings,
    check_format,
    dense_stats,
    hp,
)
from cl_compress.strategies.registry import (
    available,
    builtin_names,
    get_strategy,
    register,
    registered_names,
)

__all__ = [
    "CompressionStats", "ConfigError", "Phase", "Strategy", "StrategyConfig", "StreamInfo",
    "TaskData", "TrainSettings", "available", "builtin_names", "check_format", "dense_stats",
    "get_strategy", "hp", "register", "registered_names",
]
