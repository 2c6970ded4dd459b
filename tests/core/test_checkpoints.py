"""Signed checkpoints catch what the hash chain alone cannot: a rewound head, a re-hashed chain.

Each forgery here is one a database writer can make without breaking the chain's own
links (the first assertion of each test shows that :func:`audit.verify` passes it); the
checkpoints, signed with a key outside the database, must then catch it.
"""

from __future__ import annotations

import json
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import delete, select, update

from shuyu_platform.core import audit, checkpoints, db
from shuyu_platform.core.models import AuditEvent, AuditHead


def _fill(url: str, start: int, count: int) -> None:
    for i in range(start, start + count):
        audit.append(url, actor=f"user{i % 3}", action="catalogue.read", target=f"ds{i}")


def _checkpoint(url: str, files: tuple[Path, Path]) -> checkpoints.Checkpoint | None:
    with db.session_scope(url) as session:
        return checkpoints.write(session, *files)


def _verify(url: str, files: tuple[Path, Path], public_key=None) -> audit.Verification:  # type: ignore[no-untyped-def]
    key = public_key or checkpoints.signing_key(files[0], create=False).public_key()
    with db.session_scope(url) as session:
        return checkpoints.verify(session, checkpoints.load(files[1]), key)


def _internal(url: str) -> audit.Verification:
    with db.session_scope(url) as session:
        return audit.verify(session)


def _anchored_chain(url: str, files: tuple[Path, Path]) -> list[checkpoints.Checkpoint]:
    """30 records with checkpoints at 10, 20 and 30."""
    made = []
    for start in (0, 10, 20):
        _fill(url, start, 10)
        made.append(_checkpoint(url, files))
    assert [c.seq for c in made if c] == [10, 20, 30]
    return [c for c in made if c]


def test_intact_chain_matches_every_checkpoint(db_url: str, files: tuple[Path, Path]) -> None:
    made = _anchored_chain(db_url, files)
    result = _verify(db_url, files)
    assert result.ok and result.anchored == 3 and result.checked == 30, result
    assert result.head == (30, made[-1].hash)
    assert made[-1].hash in str(result)  # the full hash, not a prefix


def test_no_new_checkpoint_when_the_chain_did_not_grow(
    db_url: str, files: tuple[Path, Path]
) -> None:
    _anchored_chain(db_url, files)
    assert _checkpoint(db_url, files) is None
    assert len(checkpoints.load(files[1])) == 3


def test_the_key_is_private_and_checkpoints_carry_its_public_half(
    db_url: str, files: tuple[Path, Path]
) -> None:
    made = _anchored_chain(db_url, files)
    assert stat.S_IMODE(files[0].stat().st_mode) == 0o600
    public = checkpoints.signing_key(files[0]).public_key()
    assert {c.key for c in made} == {checkpoints.public_key_hex(public)}
    assert all(c.signed_by(public) for c in made)


def test_cut_tail_with_rewound_head_is_detected(db_url: str, files: tuple[Path, Path]) -> None:
    """Delete the newest 8 records and set the head back to record 22: a consistent chain."""
    made = _anchored_chain(db_url, files)
    with db.session_scope(db_url) as session:
        new_last = session.get(AuditEvent, 22)
        assert new_last is not None
        session.execute(delete(AuditEvent).where(AuditEvent.seq > 22))
        session.execute(update(AuditHead).values(seq=22, hash=new_last.hash))
    assert _internal(db_url).ok  # the chain alone cannot tell

    result = _verify(db_url, files)
    assert not result.ok and result.broken_seq == 30, result
    assert "records cut from the end" in (result.problem or "")
    assert made[-1].hash in (result.problem or "")  # full hashes in the message
    assert result.anchored == 2


def test_deleted_record_with_every_later_record_rehashed_is_detected(
    db_url: str, files: tuple[Path, Path]
) -> None:
    """Remove record 15, then re-append 16..30 as 15..29 with fresh hashes and head."""
    made = _anchored_chain(db_url, files)
    with db.session_scope(db_url) as session:
        later = [
            {"actor": e.actor, "action": e.action, "target": e.target}
            for e in session.scalars(select(AuditEvent).where(AuditEvent.seq > 15))
        ]
        before = session.get(AuditEvent, 14)
        assert before is not None
        session.execute(delete(AuditEvent).where(AuditEvent.seq >= 15))
        session.execute(update(AuditHead).values(seq=14, hash=before.hash))
    for fields in later:
        audit.append(db_url, **fields)
    assert _internal(db_url).ok  # a re-hashed chain is consistent with itself

    result = _verify(db_url, files)
    assert not result.ok and result.broken_seq == 20, result
    assert "chain rewritten" in (result.problem or "")
    assert made[1].hash in (result.problem or "")
    assert "record 10 still matches" in (result.problem or "")


def test_refuses_to_sign_a_tampered_chain(db_url: str, files: tuple[Path, Path]) -> None:
    _anchored_chain(db_url, files)
    _fill(db_url, 30, 5)
    with db.session_scope(db_url) as session:
        session.execute(update(AuditEvent).where(AuditEvent.seq == 33).values(target="x"))
    with pytest.raises(checkpoints.CheckpointError, match="not signing: record 33"):
        _checkpoint(db_url, files)
    assert len(checkpoints.load(files[1])) == 3


def test_an_altered_checkpoint_file_is_detected(db_url: str, files: tuple[Path, Path]) -> None:
    """Rewriting a checkpoint to match a forged chain needs the key."""
    _anchored_chain(db_url, files)
    lines = files[1].read_text().splitlines()
    forged = json.loads(lines[1])
    forged["hash"] = "f" * 64
    lines[1] = json.dumps(forged)
    files[1].write_text("\n".join(lines) + "\n")
    result = _verify(db_url, files)
    assert not result.ok and "checkpoint 2" in (result.problem or "")
    assert "not carry a valid signature" in (result.problem or "")


def test_checkpoints_signed_by_another_key_are_refused(
    db_url: str, files: tuple[Path, Path]
) -> None:
    _anchored_chain(db_url, files)
    stranger = Ed25519PrivateKey.generate().public_key()
    result = _verify(db_url, files, public_key=stranger)
    assert not result.ok and "checkpoint 1" in (result.problem or "")


def test_cli_checkpoint_and_verify(
    db_url: str,
    files: tuple[Path, Path],
    audit_cli: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    shuyu = audit_cli
    _fill(db_url, 0, 5)
    made = shuyu("checkpoint")
    assert made.returncode == 0 and "checkpoint: record 5" in made.stdout, made
    ok = shuyu("verify")
    assert ok.returncode == 0 and "matches 1 signed checkpoints" in ok.stdout, ok
    public = checkpoints.public_key_hex(checkpoints.signing_key(files[0]).public_key())
    assert shuyu("verify", "--public-key", public).returncode == 0

    with db.session_scope(db_url) as session:
        new_last = session.get(AuditEvent, 3)
        assert new_last is not None
        session.execute(delete(AuditEvent).where(AuditEvent.seq > 3))
        session.execute(update(AuditHead).values(seq=3, hash=new_last.hash))
    broken = shuyu("verify")
    assert broken.returncode == 1 and "BROKEN at record 5" in broken.stdout, broken
    assert checkpoints.load(files[1])[0].hash in broken.stdout
    refused = shuyu("checkpoint")
    assert refused.returncode != 0 and "not signing" in refused.stderr
