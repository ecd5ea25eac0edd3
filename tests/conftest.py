"""Shared fixtures: the repository root and a network guard."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


class NetworkBlocked(RuntimeError):
    """Raised when code under test tries to open a network connection."""


@pytest.fixture
def no_network(monkeypatch):
    """Make every attempt to resolve a host or connect raise."""

    def refuse(*args, **kwargs):
        raise NetworkBlocked(f"network access attempted: {args[:2]}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)
    yield


@pytest.fixture(scope="session")
def root() -> Path:
    """The repository root."""
    return ROOT
