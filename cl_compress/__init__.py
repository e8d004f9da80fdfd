"""cl_compress: a Lightning experiment framework for compression-aware continual learning.

Entry point: ``python -m cl_compress.train strategy=<name> benchmark=<name>`` (or ``make exp``).
"""

__version__ = "0.1.0"
