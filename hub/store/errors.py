"""The store's errors: something it must refuse, and a person, template or device it does not know."""

from __future__ import annotations


class StoreError(Exception):
    """The store cannot do what was asked: a database or key file it must not use, or a broken invariant."""


class NotFound(StoreError):
    """The person, template or device named does not exist (or the person was erased)."""
