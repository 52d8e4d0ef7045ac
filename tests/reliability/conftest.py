"""Fixtures of the reliability suite: loopback teachers, closed after each case, and a clean secrets registry."""

from __future__ import annotations

from typing import Callable, Iterator, Optional

import pytest

from loopback import Reply, Teacher


@pytest.fixture
def serve() -> Iterator[Callable[..., Teacher]]:
    started: list[Teacher] = []

    def start(fault: Optional[Callable[[int, dict], Optional[Reply]]] = None) -> Teacher:
        started.append(Teacher(fault))
        return started[-1]

    yield start
    for server in started:
        server.close()
