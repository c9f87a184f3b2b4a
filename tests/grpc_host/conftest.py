"""Fixtures of the gRPC host tests; they live in grpc_support (a uniquely named module, so that
tests can import its helpers without clashing with the other folders' conftest modules)."""

from grpc_support import (  # noqa: F401  (pytest discovers fixtures by name)
    channel,
    host,
    host_process,
    sims,
    start_grpc_host,
    start_sims,
    stub,
)
