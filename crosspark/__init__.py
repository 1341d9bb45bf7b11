"""crosspark: one monthly parking card across many lots' systems.

This package holds the runtime every service shares (configuration, clock, database, gRPC
bootstrap, authentication, logging, metrics, the ``crosspark`` command) and the vehicle identity
domain. ``crosspark.v1`` is generated from ``protos/`` by ``build.py`` and is not source.
"""

__version__ = "0.1.0"
