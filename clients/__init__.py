"""Clients of the gateway: the console CLI and the traffic generator (`python -m clients.cli`)."""
