"""The tamper-evident audit chain (R13 recordable and traceable, R14 "on chain").

Every record carries the SHA-256 of its predecessor, so changing, removing or
reordering any stored record breaks the chain at that point, and :func:`verify` names
the first record where it breaks. A record is appended with :func:`record` inside the
same database transaction as the state change it describes, so a change is never
committed without its record, nor a record without its change.

Appending first bumps the single-row chain head (``audit_head``). That UPDATE takes
the database's write lock (SQLite) or the row lock (PostgreSQL) before the previous
hash is read, so concurrent writers in different processes queue up instead of
forking the chain. On PostgreSQL the row lock is held from the append to the commit,
and every audited request of every process queues for it: there the append is one
statement (:data:`_APPEND_PG`: lock the head, hash the record from the locked previous
hash, insert it, move the head), so a writer holds the lock for two round trips of the
database (the statement and the commit), not four.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

from sqlalchemy import select, text, update
from sqlalchemy.orm import Session

from . import merkle
from .db import session_scope
from .models import AuditEvent, AuditHead

GENESIS = "0" * 64

ActorKind = Literal["user", "service", "system"]
Outcome = Literal["ok", "denied", "error"]


def canonical_json(value: Any) -> str:
    """The one JSON spelling used for hashing: sorted keys, no spaces, UTF-8 kept."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def record_hash(fields: dict[str, Any]) -> str:
    """SHA-256 of one record's canonical form (every stored column but ``hash``)."""
    return hashlib.sha256(canonical_json(fields).encode("utf-8")).hexdigest()


def _hashed_fields(event: AuditEvent) -> dict[str, Any]:
    return {
        "seq": event.seq,
        "ts": event.ts,
        "actor": event.actor,
        "actor_kind": event.actor_kind,
        "action": event.action,
        "target": event.target,
        "tenant": event.tenant,
        "outcome": event.outcome,
        "detail": event.detail,
        "prev_hash": event.prev_hash,
    }


def leaf_data(fields: dict[str, Any]) -> bytes:
    """The bytes of one record's Merkle leaf (:mod:`.merkle`): the canonical form of its
    hashed fields, whose SHA-256 is the record's chain hash."""
    return canonical_json(fields).encode("utf-8")


def merkle_leaves(session: Session, size: int) -> Iterator[bytes]:
    """The Merkle leaf hashes of records 1..``size`` in chain order, streamed."""
    rows = session.execute(
        select(AuditEvent).where(AuditEvent.seq <= size).order_by(AuditEvent.seq)
    ).scalars()
    for event in rows.yield_per(2000):
        yield merkle.leaf_hash(leaf_data(_hashed_fields(event)))


def proof_record(session: Session, seq: int) -> dict[str, Any] | None:
    """Record ``seq`` as stored (``detail`` as its canonical JSON text) with its hash:
    what an inclusion proof carries, so the verifier re-derives both hashes."""
    event = session.get(AuditEvent, seq)
    if event is None:
        return None
    return _hashed_fields(event) | {"hash": event.hash}


def record(
    session: Session,
    *,
    actor: str,
    action: str,
    target: str = "",
    actor_kind: ActorKind = "user",
    tenant: str | None = None,
    outcome: Outcome = "ok",
    detail: dict[str, Any] | None = None,
) -> AuditEvent:
    """Append one event to the chain within ``session``'s transaction.

    The caller commits (or rolls back) together with whatever state change the event
    records. ``action`` is a dotted verb such as ``auth.login`` or ``catalogue.read``.
    """
    fields: dict[str, Any] = {
        "actor": actor,
        "actor_kind": actor_kind,
        "action": action,
        "target": target,
        "tenant": tenant,
        "outcome": outcome,
        "detail": canonical_json(detail or {}),
    }
    if session.get_bind().dialect.name == "postgresql":
        return _record_pg(session, fields)
    seq, prev_hash = session.execute(
        update(AuditHead)
        .where(AuditHead.id == 1)
        .values(seq=AuditHead.seq + 1)
        .returning(AuditHead.seq, AuditHead.hash)
    ).one()
    event = AuditEvent(seq=seq, ts=_now(), prev_hash=prev_hash, **fields)
    event.hash = record_hash(_hashed_fields(event))
    session.add(event)
    session.execute(update(AuditHead).where(AuditHead.id == 1).values(hash=event.hash))
    session.flush()
    return event


#: The whole append on PostgreSQL, one statement: lock the head row, take the next
#: sequence number, the previous hash and the time, hash the record's canonical form
#: (:func:`record_hash`; the text around the three values the database supplies is
#: made by :func:`_canonical_around`), insert the record and move the head to it.
_APPEND_PG = text(
    """
    WITH locked AS (
        SELECT seq + 1 AS seq, hash AS prev_hash,
               to_char(clock_timestamp() AT TIME ZONE 'UTC',
                       'YYYY-MM-DD"T"HH24:MI:SS.US"Z"') AS ts
        FROM audit_head WHERE id = 1 FOR UPDATE
    ), made AS (
        SELECT seq, prev_hash, ts,
               encode(sha256(convert_to(
                   :before_prev_hash || prev_hash || :before_seq || seq::text
                   || :before_ts || ts || :after_ts, 'UTF8')), 'hex') AS hash
        FROM locked
    ), added AS (
        INSERT INTO audit_events (seq, ts, actor, actor_kind, action, target, tenant,
                                  outcome, detail, prev_hash, hash)
        SELECT seq, ts, :actor, :actor_kind, :action, :target, :tenant, :outcome, :detail,
               prev_hash, hash
        FROM made
        RETURNING seq
    )
    UPDATE audit_head SET seq = made.seq, hash = made.hash
    FROM made, added
    WHERE audit_head.id = 1 AND added.seq = made.seq
    RETURNING made.seq, made.prev_hash, made.ts, made.hash
    """
)


def _canonical_around(fields: dict[str, Any]) -> dict[str, str]:
    """The canonical form (:func:`canonical_json`) of a record whose ``prev_hash``,
    ``seq`` and ``ts`` the database fills in, as the four texts around those values.

    The hashed fields are all scalars and sorted by name, so the form is
    ``{…,"outcome":…,"prev_hash":"<hash>","seq":<n>,"target":…,"tenant":…,"ts":"<ts>"}``.
    """

    def pair(name: str) -> str:
        return f"{canonical_json(name)}:{canonical_json(fields[name])}"

    return {
        "before_prev_hash": "{"
        + ",".join(pair(n) for n in ("action", "actor", "actor_kind", "detail", "outcome"))
        + ',"prev_hash":"',
        "before_seq": '","seq":',
        "before_ts": "," + ",".join(pair(n) for n in ("target", "tenant")) + ',"ts":"',
        "after_ts": '"}',
    }


def _record_pg(session: Session, fields: dict[str, Any]) -> AuditEvent:
    """:func:`record` on PostgreSQL: one statement (:data:`_APPEND_PG`)."""
    session.flush()  # the change the record describes goes first, as on every database
    seq, prev_hash, ts, digest = session.execute(
        _APPEND_PG, fields | _canonical_around(fields)
    ).one()
    held = session.identity_map.get(session.identity_key(AuditHead, 1))
    if held is not None:  # the statement moved the head behind the session's back
        session.expire(held)
    return AuditEvent(seq=seq, ts=ts, prev_hash=prev_hash, hash=digest, **fields)


def append(db_url: str, **event: Any) -> None:
    """Record one event in a transaction of its own (for events with no state change,
    such as a login or a refused request)."""
    with session_scope(db_url) as session:
        record(session, **event)


@dataclass(frozen=True)
class Verification:
    """Result of checking the chain: ``ok``, or the first broken record and why.

    ``anchored`` counts the signed checkpoints the chain was also checked against
    (:mod:`shuyu_platform.core.checkpoints`); ``head`` is the newest (seq, hash) checked.
    """

    ok: bool
    checked: int
    broken_seq: int | None = None
    problem: str | None = None
    anchored: int = 0
    head: tuple[int, str] | None = None

    def __str__(self) -> str:
        if self.ok:
            text = f"OK: {self.checked} audit records, chain intact"
            if self.head:
                text += f"; head record {self.head[0]}, hash {self.head[1]}"
            if self.anchored:
                text += f"; matches {self.anchored} signed checkpoints"
            return text
        return f"BROKEN at record {self.broken_seq}: {self.problem} ({self.checked} checked)"

    def as_dict(self) -> dict[str, Any]:
        """JSON form for the audit API."""
        return {
            "ok": self.ok,
            "checked": self.checked,
            "broken_seq": self.broken_seq,
            "problem": self.problem,
            "anchored": self.anchored,
            "head": list(self.head) if self.head else None,
        }


def head(session: Session) -> tuple[int, str]:
    """The chain head as stored: (sequence number, hash) of the newest record."""
    row = session.get(AuditHead, 1)
    if row is None:
        raise LookupError("the audit chain's head row is missing")
    return row.seq, row.hash


def verify(session: Session, *, after: tuple[int, str] = (0, GENESIS)) -> Verification:
    """Re-derive every hash from the start of the chain; report the first break.

    ``after`` starts at a record already known good (its seq and hash, e.g. from a
    signed checkpoint) instead of the genesis, to check only what was appended since.
    """
    expected_seq = after[0] + 1
    prev_hash = after[1]
    checked = 0
    rows = session.execute(
        select(AuditEvent).where(AuditEvent.seq > after[0]).order_by(AuditEvent.seq)
    ).scalars()
    for event in rows.yield_per(2000):
        if event.seq != expected_seq:
            return Verification(
                False,
                checked,
                expected_seq,
                f"record missing: expected sequence {expected_seq}, found {event.seq}",
            )
        if event.prev_hash != prev_hash:
            return Verification(
                False,
                checked,
                event.seq,
                f"link broken: its prev_hash {event.prev_hash} is not {prev_hash}, "
                "the hash of the record before it",
            )
        computed = record_hash(_hashed_fields(event))
        if computed != event.hash:
            return Verification(
                False,
                checked,
                event.seq,
                f"content altered: stored hash {event.hash}, recomputed {computed}",
            )
        checked += 1
        prev_hash = event.hash
        expected_seq += 1
    stored = session.get(AuditHead, 1)
    last_seq = expected_seq - 1
    if stored is None:
        return Verification(False, checked, None, "chain head row is missing")
    if stored.seq != last_seq or stored.hash != prev_hash:
        return Verification(
            False,
            checked,
            last_seq + 1,
            f"records cut from the end: the head records {stored.seq} events with hash "
            f"{stored.hash}, the log holds {last_seq} ending in hash {prev_hash}",
        )
    return Verification(True, checked, head=(last_seq, prev_hash))


def event_dict(event: AuditEvent) -> dict[str, Any]:
    """JSON form of one record, as the audit API returns it."""
    fields = _hashed_fields(event)
    fields["detail"] = json.loads(event.detail)
    fields["hash"] = event.hash
    return fields


def newest(session: Session, count: int) -> list[dict[str, Any]]:
    """The ``count`` newest records, oldest first."""
    head = session.get(AuditHead, 1)
    last = head.seq if head else 0
    return query(session, after_seq=max(0, last - count), limit=count)


def query(
    session: Session,
    *,
    after_seq: int = 0,
    limit: int = 100,
    action: str | None = None,
    actor: str | None = None,
    tenant: str | None = None,
) -> list[dict[str, Any]]:
    """Records after ``after_seq`` in chain order, optionally filtered.

    ``action`` matches exactly, or as a prefix when it ends with ``.`` or ``*``
    (``auth.`` gives every ``auth.*`` event).
    """
    stmt = select(AuditEvent).where(AuditEvent.seq > after_seq)
    if action:
        if action.endswith(("*", ".")):
            stmt = stmt.where(AuditEvent.action.startswith(action.rstrip("*"), autoescape=True))
        else:
            stmt = stmt.where(AuditEvent.action == action)
    if actor:
        stmt = stmt.where(AuditEvent.actor == actor)
    if tenant:
        stmt = stmt.where(AuditEvent.tenant == tenant)
    stmt = stmt.order_by(AuditEvent.seq).limit(limit)
    return [event_dict(e) for e in session.execute(stmt).scalars()]
