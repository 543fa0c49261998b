"""The snapshot's users as columns: every field a plan reads, in one pass over the users.

At 100,000 users the user objects lie scattered in memory (they were built while pages of
JSON were parsed), so each pass over them costs about a cache miss per user. Reading all the
fields in one pass and slicing the fresh, contiguous rows into columns costs a fraction of a
pass per field; rule matching and the fingerprint then share the columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from operator import attrgetter, itemgetter
from typing import Any

from reconciler.model import TenantUser

Columns = dict[str, list[Any]]


def user_columns(users: Sequence[TenantUser], fields: Sequence[str]) -> Columns:
    """field name -> that field of every user, in the users' order."""
    unique = list(dict.fromkeys(fields))
    if not unique:
        return {}
    if len(unique) == 1:  # attrgetter of one name returns the value, not a 1-tuple
        return {unique[0]: list(map(attrgetter(unique[0]), users))}
    rows = list(map(attrgetter(*unique), users))
    return {name: list(map(itemgetter(i), rows)) for i, name in enumerate(unique)}
