"""Merkle inclusion proofs of audit records: checked from the proof and the public key alone.

The verifier is given nothing but the proof document and the signer's public key (what
an auditor outside the platform holds); every forgery here must be refused by it.
"""

from __future__ import annotations

import copy
import json
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import update

from shuyu_platform.core import audit, checkpoints, db
from shuyu_platform.core.models import AuditEvent


def _fill(url: str, start: int, count: int) -> None:
    for i in range(start, start + count):
        audit.append(
            url, actor=f"user{i % 3}", action="dp.query", target=f"ds{i}", detail={"ε": 0.1}
        )


def _checkpoint(url: str, files: tuple[Path, Path]) -> checkpoints.Checkpoint | None:
    with db.session_scope(url) as session:
        return checkpoints.write(session, *files)


def _prove(url: str, files: tuple[Path, Path], seq: int) -> dict[str, Any]:
    with db.session_scope(url) as session:
        return checkpoints.prove(session, checkpoints.load(files[1]), seq)


def _public(files: tuple[Path, Path]) -> Any:
    return checkpoints.signing_key(files[0], create=False).public_key()


def test_every_record_proves_against_the_newest_checkpoint(
    db_url: str, files: tuple[Path, Path]
) -> None:
    _fill(db_url, 0, 6)
    first = _checkpoint(db_url, files)
    _fill(db_url, 6, 7)
    second = _checkpoint(db_url, files)
    assert first and second and first.merkle_root and second.merkle_root
    assert first.merkle_root != second.merkle_root
    for seq in range(1, 14):
        document = _prove(db_url, files, seq)
        assert document["tree_size"] == 13 and document["record"]["seq"] == seq
        assert len(document["proof"]) <= 4  # log2 of the tree, not the whole log
        said = checkpoints.verify_proof(json.loads(json.dumps(document)), _public(files))
        assert said.startswith(f"OK: record {seq} ") and second.merkle_root in said
    with db.session_scope(db_url) as session:  # the roots are also held to the records
        result = checkpoints.verify(session, checkpoints.load(files[1]), _public(files))
    assert result.ok and result.anchored == 2


def _forged(document: dict[str, Any], change: Any) -> dict[str, Any]:
    forged = copy.deepcopy(document)
    change(forged)
    return forged


def _rehashed(document: dict[str, Any]) -> None:
    """The record changed and its hash recomputed: consistent with itself, not the tree."""
    record = document["record"]
    record["actor"] = "somebody-else"
    record["hash"] = audit.record_hash({k: v for k, v in record.items() if k != "hash"})


def _flip_first(document: dict[str, Any]) -> None:
    document["proof"][0] = ("0" if document["proof"][0][0] != "0" else "1") + document["proof"][0][
        1:
    ]


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda d: d["record"].update(actor="somebody-else"), "altered"),
        (_rehashed, "does not lead"),
        (_flip_first, "does not lead"),
        (lambda d: d["proof"].pop(), "does not lead"),
        (lambda d: d.update(leaf_index=d["leaf_index"] + 1), "is for leaf"),
        (lambda d: d["checkpoint"].update(merkle_root="0" * 64), "not signed by"),
        (lambda d: d["checkpoint"].update(seq=d["checkpoint"]["seq"] + 1), "not signed by"),
        (lambda d: d.pop("proof"), "not an audit inclusion proof"),
        (lambda d: d["proof"].append("zz"), "not an audit inclusion proof"),
    ],
)
def test_a_forged_record_or_proof_is_refused(tmp_path: Path, change: Any, why: str) -> None:
    url = f"sqlite:///{tmp_path / 'shuyu.db'}"
    db.upgrade(url)
    files = (tmp_path / "key.pem", tmp_path / "checkpoints.jsonl")
    _fill(url, 0, 11)
    _checkpoint(url, files)
    document = _prove(url, files, 5)
    assert checkpoints.verify_proof(document, _public(files)).startswith("OK")
    with pytest.raises(checkpoints.CheckpointError, match=why):
        checkpoints.verify_proof(_forged(document, change), _public(files))


def test_a_proof_is_refused_with_another_key(db_url: str, files: tuple[Path, Path]) -> None:
    _fill(db_url, 0, 3)
    _checkpoint(db_url, files)
    stranger = Ed25519PrivateKey.generate().public_key()
    with pytest.raises(checkpoints.CheckpointError, match="not signed by"):
        checkpoints.verify_proof(_prove(db_url, files, 2), stranger)


def test_checkpoints_without_a_root_stay_verifiable(tmp_path: Path) -> None:
    """A checkpoint signed before the tree existed verifies as before; proofs need a rooted one."""
    url = f"sqlite:///{tmp_path / 'shuyu.db'}"
    db.upgrade(url)
    files = (tmp_path / "key.pem", tmp_path / "checkpoints.jsonl")
    _fill(url, 0, 4)
    key = checkpoints.signing_key(files[0])
    with db.session_scope(url) as session:
        seq, head_hash = audit.head(session)
    old = checkpoints.sign(key, seq, head_hash)
    files[1].write_text(old.line())
    assert "merkle_root" not in old.line()
    with pytest.raises(checkpoints.CheckpointError, match="no signed checkpoint with a Merkle"):
        _prove(url, files, 2)
    _fill(url, 4, 2)
    assert _checkpoint(url, files) is not None
    with db.session_scope(url) as session:
        result = checkpoints.verify(session, checkpoints.load(files[1]), key.public_key())
    assert result.ok and result.anchored == 2
    assert checkpoints.verify_proof(_prove(url, files, 2), key.public_key()).startswith("OK")


def test_a_root_the_records_do_not_give_is_found(tmp_path: Path) -> None:
    """A checkpoint whose root disagrees with the records, and a log altered since signing."""
    url = f"sqlite:///{tmp_path / 'shuyu.db'}"
    db.upgrade(url)
    files = (tmp_path / "key.pem", tmp_path / "checkpoints.jsonl")
    _fill(url, 0, 5)
    key = checkpoints.signing_key(files[0])
    with db.session_scope(url) as session:
        seq, head_hash = audit.head(session)
    files[1].write_text(checkpoints.sign(key, seq, head_hash, merkle_root="ab" * 32).line())
    with db.session_scope(url) as session:
        result = checkpoints.verify(session, checkpoints.load(files[1]), key.public_key())
    assert not result.ok and "Merkle root of records 1..5" in (result.problem or "")

    files[1].unlink()
    _checkpoint(url, files)
    with db.session_scope(url) as session:
        session.execute(update(AuditEvent).where(AuditEvent.seq == 2).values(target="forged"))
    with pytest.raises(checkpoints.CheckpointError, match="no longer give the Merkle root"):
        _prove(url, files, 4)


def test_cli_prove_and_verify_proof(
    db_url: str,
    tmp_path: Path,
    files: tuple[Path, Path],
    audit_cli: Callable[..., subprocess.CompletedProcess[str]],
) -> None:
    shuyu = audit_cli
    _fill(db_url, 0, 9)
    assert shuyu("checkpoint").returncode == 0
    proof = tmp_path / "proof.json"
    made = shuyu("prove", "7", "-o", str(proof))
    assert made.returncode == 0, made
    public = checkpoints.public_key_hex(_public(files))
    ok = shuyu("verify-proof", str(proof), "--public-key", public)
    assert ok.returncode == 0 and ok.stdout.startswith("OK: record 7 "), ok

    document = json.loads(proof.read_text())
    document["record"]["target"] = "ds-forged"
    proof.write_text(json.dumps(document))
    refused = shuyu("verify-proof", str(proof), "--public-key", public)
    assert refused.returncode == 1 and "NOT VERIFIED: record 7 altered" in refused.stdout
    missing = shuyu("prove", "99")
    assert missing.returncode != 0 and "no audit record 99" in missing.stderr
