"""Consumer groups a command made for itself, deleted when it is done with them.

``trilink run`` and ``trilink loadtest`` give every service a consumer group of its own for
that run (so its report covers exactly that run), and the broker warm-up reads with a scratch
group. Left behind, each stays on the broker, Empty, with its committed offsets, until the
broker expires them (``offsets.retention.minutes``, 7 days by default): dozens after a day of
runs, listed by every ``kafka-consumer-groups --list``.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from trilink.platform.clients import admin_config
from trilink.platform.security import ClientSecurity

log = logging.getLogger(__name__)

__all__ = ["delete_groups", "delete_groups_at"]


def delete_groups(admin: Any, group_ids: Sequence[str]) -> list[str]:
    """Delete ``group_ids`` with ``admin`` (a ``KafkaAdminClient``); returns those the broker did
    not delete (logged, never raised: a leftover group costs nothing but a line in a listing).

    A group with members still in it is refused (``NonEmptyGroupError``): a member that was
    killed stays in it until its session times out."""
    if not group_ids:
        return []
    try:
        results = admin.delete_groups(list(group_ids))  # kafka-python 3.0: {group: "OK" or the error's name}
    except Exception as exc:
        log.warning("deleting consumer groups %s failed: %r", ", ".join(group_ids), exc)
        return list(group_ids)
    kept = [group_id for group_id in group_ids if results.get(group_id) != "OK"]
    for group_id in kept:
        log.warning("consumer group %s not deleted: %s", group_id, results.get(group_id, "no answer"))
    return kept


def delete_groups_at(
    bootstrap: str, group_ids: Sequence[str], *, client_id: str, security: ClientSecurity | None = None
) -> list[str]:
    """:func:`delete_groups` through an admin client of its own (as admin on a secured cluster)."""
    from kafka import KafkaAdminClient

    try:
        admin = KafkaAdminClient(**admin_config(bootstrap, client_id, security))
    except Exception as exc:
        log.warning("deleting consumer groups %s: no admin client: %r", ", ".join(group_ids), exc)
        return list(group_ids)
    try:
        return delete_groups(admin, group_ids)
    finally:
        try:
            admin.close()
        except Exception:
            log.debug("closing the admin client failed", exc_info=True)
