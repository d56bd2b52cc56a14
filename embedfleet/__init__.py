"""embedfleet: a gRPC batch embedding system.

This core package holds what every process shares and nothing heavy: the generated API stubs, the
domain types, the Redis job store, settings and the model registry. It never imports torch, so the
gateway and the client stay light; model code lives in ``embedfleet.worker``.
"""

__version__ = "0.1.0"
