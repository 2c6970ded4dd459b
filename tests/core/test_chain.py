"""The audit chain detects altered, removed and truncated records, and never forks."""

from __future__ import annotations

import multiprocessing
import subprocess
from pathlib import Path

import pytest
from sqlalchemy import event, text

from harness import BIN
from shuyu_platform.core import audit, db
from shuyu_platform.core.models import AuditEvent


def _fill(url: str, count: int) -> None:
    for i in range(count):
        audit.append(
            url,
            actor=f"user{i % 3}",
            action="catalogue.read",
            target=f"ds{i}",
            detail={"i": i, "名字": "张三"},
        )


def _verify(url: str) -> audit.Verification:
    with db.session_scope(url) as session:
        return audit.verify(session)


def test_intact_chain_verifies(db_url: str) -> None:
    _fill(db_url, 25)
    result = _verify(db_url)
    assert result.ok and result.checked == 25, result


def test_one_altered_byte_names_that_record(db_url: str) -> None:
    _fill(db_url, 10)
    with db.session_scope(db_url) as session:
        detail = session.execute(text("SELECT detail FROM audit_events WHERE seq = 7")).scalar()
        session.execute(
            text("UPDATE audit_events SET detail = :d WHERE seq = 7"),
            {"d": detail.replace('"i":6', '"i":7')},
        )
    result = _verify(db_url)
    assert not result.ok
    assert result.broken_seq == 7
    assert "content altered" in (result.problem or "")


def test_rehashed_forgery_breaks_the_next_link(db_url: str) -> None:
    """Rewriting a record *and* its hash still breaks the link of the record after it."""
    _fill(db_url, 6)
    with db.session_scope(db_url) as session:
        event = session.get(AuditEvent, 3)
        event.actor = "someone-else"
        event.hash = audit.record_hash(audit._hashed_fields(event))
    result = _verify(db_url)
    assert (result.ok, result.broken_seq) == (False, 4)
    assert "link broken" in (result.problem or "")


def test_removed_record_is_detected(db_url: str) -> None:
    _fill(db_url, 6)
    with db.session_scope(db_url) as session:
        session.execute(text("DELETE FROM audit_events WHERE seq = 2"))
    result = _verify(db_url)
    assert (result.ok, result.broken_seq) == (False, 2)
    assert "missing" in (result.problem or "")


def test_records_cut_from_the_end_are_detected(db_url: str) -> None:
    _fill(db_url, 6)
    with db.session_scope(db_url) as session:
        session.execute(text("DELETE FROM audit_events WHERE seq = 6"))
    result = _verify(db_url)
    assert (result.ok, result.broken_seq) == (False, 6)
    assert "cut from the end" in (result.problem or "")


def test_record_shares_the_transaction_of_its_change(db_url: str) -> None:
    """A rolled-back change leaves no record, and the chain stays intact."""
    _fill(db_url, 2)
    with pytest.raises(RuntimeError), db.session_scope(db_url) as session:
        audit.record(session, actor="ada", action="tenant.suspend", target="kangning")
        raise RuntimeError("the state change failed")
    with db.session_scope(db_url) as session:
        assert [e["action"] for e in audit.query(session)] == ["catalogue.read"] * 2
    assert _verify(db_url).ok


def _writer(url: str, worker: int, count: int) -> None:
    for i in range(count):
        audit.append(url, actor=f"w{worker}", action="test.write", target=str(i))


def test_concurrent_writers_in_many_processes_never_fork_the_chain(db_url: str) -> None:
    ctx = multiprocessing.get_context("spawn")
    workers = [ctx.Process(target=_writer, args=(db_url, w, 40)) for w in range(4)]
    for proc in workers:
        proc.start()
    for proc in workers:
        proc.join(120)
        assert proc.exitcode == 0
    result = _verify(db_url)
    assert result.ok and result.checked == 160, result


def test_cli_verify_exit_codes(db_url: str, tmp_path: Path) -> None:
    _fill(db_url, 3)
    cmd = [str(BIN / "shuyu"), "audit", "verify", "--db-url", db_url]
    ok = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert ok.returncode == 0 and ok.stdout.startswith("OK: 3 audit records"), ok
    with db.session_scope(db_url) as session:
        session.execute(text("UPDATE audit_events SET target = 'x' WHERE seq = 2"))
    broken = subprocess.run(cmd, capture_output=True, text=True, check=False)
    assert broken.returncode == 1
    assert "BROKEN at record 2" in broken.stdout


def test_query_filters(db_url: str) -> None:
    _fill(db_url, 6)
    audit.append(
        db_url,
        actor="alice",
        action="auth.login",
        outcome="denied",
        detail={"reason": "wrong password"},
    )
    with db.session_scope(db_url) as session:
        assert len(audit.query(session, action="auth.")) == 1
        assert len(audit.query(session, actor="user0")) == 2
        assert [e["seq"] for e in audit.query(session, after_seq=5, limit=1)] == [6]
        assert audit.query(session, action="auth.login")[0]["detail"] == {
            "reason": "wrong password"
        }


def test_append_holds_the_head_for_one_statement_on_postgresql(db_url: str) -> None:
    """On PostgreSQL every audited request of every process queues for the head row's lock
    from its append to its commit: the append is one statement there, and the record the
    database hashed is the record :func:`audit.record_hash` hashes, whatever its text."""
    _fill(db_url, 2)
    statements: list[str] = []
    engine = db.engine_for(db_url)

    def count(_conn, _cursor, statement, *_args) -> None:  # type: ignore[no-untyped-def]
        statements.append(statement)

    awkward = 'quote " backslash \\ newline \n tab \t 名字 \u2028 end'
    event.listen(engine, "before_cursor_execute", count)
    try:
        with db.session_scope(db_url) as session:
            head_before = audit.head(session)  # the head, loaded into the session
            statements.clear()
            made = audit.record(
                session,
                actor=awkward,
                action="test.awkward",
                target=awkward,
                tenant=None,
                detail={"text": awkward, "n": 1.5, "list": [1, "二"]},
            )
            appended = len(statements)
            assert audit.head(session) == (made.seq, made.hash)  # not the stale head
    finally:
        event.remove(engine, "before_cursor_execute", count)
    if engine.dialect.name == "postgresql":
        assert appended == 1, statements
    assert made.seq == head_before[0] + 1 and made.prev_hash == head_before[1]
    with db.session_scope(db_url) as session:
        stored = session.get(AuditEvent, made.seq)
        assert stored is not None
        assert (stored.actor, stored.target, stored.tenant) == (awkward, awkward, None)
        assert stored.hash == made.hash == audit.record_hash(audit._hashed_fields(stored))
        assert stored.ts == made.ts
    assert _verify(db_url).ok
