"""Fixtures for the calls tests: recorders that are always stopped, and users."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from django.contrib.auth.models import Permission, User

from calls.recorder import Recorder


@pytest.fixture
def recorder_factory(transactional_db: None) -> Iterator[Callable[..., Recorder]]:
    """Make recorders (small defaults, fast linger) and stop them before the tables are flushed."""
    made: list[Recorder] = []

    def make(**kwargs: Any) -> Recorder:
        kwargs.setdefault("linger_s", 0.005)
        kwargs.setdefault("retry_max_s", 0.2)
        recorder = Recorder(**kwargs)
        made.append(recorder)
        return recorder

    yield make
    for recorder in made:
        recorder.stop(timeout=2.0)
        assert recorder.thread is None or not recorder.thread.is_alive()


@pytest.fixture
def staff_user(db: None) -> User:
    """Return a staff member who may view calls."""
    user = User.objects.create_user("operator", password="pw-operator", is_staff=True)
    user.user_permissions.add(Permission.objects.get(codename="view_call"))
    return user


@pytest.fixture
def plain_user(db: None) -> User:
    """Return a logged-in-able user who is not staff."""
    return User.objects.create_user("caller", password="pw-caller")
