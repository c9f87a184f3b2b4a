"""Run the whole gateway on this machine: simulators, REST server, gRPC host (see __main__)."""
