"""Signed checkpoints that anchor the audit chain outside the database (R14).

The hash chain (:mod:`shuyu_platform.core.audit`) shows that records were changed,
removed or reordered, but only relative to itself: someone who can write the database
can cut the tail and rewind the head, or delete a record and re-hash every record after
it, and the chain is consistent again. A **checkpoint** pins the head at one moment:
the number of records and the hash of the newest, with the time, signed with an Ed25519
key kept outside the database. Checkpoints are appended to their own append-only file
and published on the public product register, so copies exist beyond the operator's
reach. :func:`verify` then holds the database to every checkpoint: the record a
checkpoint names must still exist with the hash it signed.

A checkpoint also signs the RFC 6962 Merkle tree head of records 1..seq
(``merkle_root``, :mod:`.merkle`), so one record's inclusion can be proven from the
checkpoint alone (:func:`prove`, :func:`verify_proof`), without the log. Checkpoints
written before the tree existed carry no root; their signatures stay valid.

A checkpoint is written only after the records appended since the previous one are
checked, so a tampered chain is never signed.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy.orm import Session

from . import audit, merkle
from .models import AuditEvent

#: Prefix of every signed message, so a checkpoint signature means nothing elsewhere.
DOMAIN = b"shuyu-audit-checkpoint-v1\n"


class CheckpointError(Exception):
    """The checkpoint file or key cannot be used (unreadable, malformed, wrong key)."""


@dataclass(frozen=True)
class Checkpoint:
    """One signed statement: "the audit chain held ``seq`` records, the newest hashed ``hash``"."""

    seq: int
    hash: str
    at: str  # UTC, ISO 8601 with 'Z'
    key: str  # the signer's Ed25519 public key, 64 hex digits
    signature: str  # Ed25519 signature of :meth:`message`, 128 hex digits
    merkle_root: str | None = None  # RFC 6962 tree head of records 1..seq, 64 hex digits

    @classmethod
    def from_fields(cls, fields: Any) -> Checkpoint:
        """A checkpoint read back from its JSON object (a checkpoint file's line or a
        proof's ``checkpoint``); ``KeyError``, ``TypeError`` or ``ValueError`` if malformed."""
        return cls(
            seq=int(fields["seq"]),
            hash=str(fields["hash"]),
            at=str(fields["at"]),
            key=str(fields["key"]),
            signature=str(fields["signature"]),
            merkle_root=_optional_str(fields.get("merkle_root")),
        )

    def message(self) -> bytes:
        """The exact bytes signed: the domain prefix and the canonical JSON of the claim
        (the Merkle root is part of the claim when the checkpoint has one)."""
        claim: dict[str, Any] = {"seq": self.seq, "hash": self.hash, "at": self.at}
        if self.merkle_root is not None:
            claim["merkle_root"] = self.merkle_root
        return DOMAIN + audit.canonical_json(claim).encode("utf-8")

    def signed_by(self, public_key: Ed25519PublicKey) -> bool:
        """Whether the signature is valid for ``public_key``."""
        try:
            public_key.verify(bytes.fromhex(self.signature), self.message())
        except (InvalidSignature, ValueError):
            return False
        return public_key_hex(public_key) == self.key

    def line(self) -> str:
        """The checkpoint as one line of the checkpoint file."""
        fields = {k: v for k, v in asdict(self).items() if v is not None}
        return json.dumps(fields, sort_keys=True, separators=(",", ":")) + "\n"


# ------------------------------------------------------------------------ the key
def public_key_hex(public_key: Ed25519PublicKey) -> str:
    """The raw 32-byte public key in hex, as published."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return raw.hex()


def parse_public_key(text: str) -> Ed25519PublicKey:
    """A public key given as 64 hex digits (what the product register publishes)."""
    try:
        return Ed25519PublicKey.from_public_bytes(bytes.fromhex(text.strip()))
    except ValueError:
        raise CheckpointError(
            f"not an Ed25519 public key (64 hex digits expected): {text!r}"
        ) from None


def signing_key(path: Path, *, create: bool = True) -> Ed25519PrivateKey:
    """The signing key at ``path``; created there (mode 0600) on first use if ``create``."""
    if not path.exists():
        if not create:
            raise CheckpointError(f"no audit signing key at {path}")
        path.parent.mkdir(parents=True, exist_ok=True)
        key = Ed25519PrivateKey.generate()
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        with contextlib.suppress(FileExistsError):  # another process made it first
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(pem)
                fh.flush()
                os.fsync(fh.fileno())
    try:
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    except (ValueError, TypeError) as err:
        raise CheckpointError(f"{path} is not a PEM private key: {err}") from None
    if not isinstance(key, Ed25519PrivateKey):
        raise CheckpointError(f"{path} holds a {type(key).__name__}, not an Ed25519 key")
    return key


def key_id(public_key: Ed25519PublicKey) -> str:
    """A short fingerprint of a public key (SHA-256 of its raw bytes, 16 hex digits)."""
    return hashlib.sha256(bytes.fromhex(public_key_hex(public_key))).hexdigest()[:16]


# ------------------------------------------------------------------------ the file
def load(path: Path) -> list[Checkpoint]:
    """Every checkpoint in the file, oldest first (none if the file does not exist)."""
    if not path.exists():
        return []
    found = []
    with path.open(encoding="utf-8") as fh:
        for number, text in enumerate(fh, 1):
            if not text.strip():
                continue
            try:
                found.append(Checkpoint.from_fields(json.loads(text)))
            except (ValueError, KeyError, TypeError) as err:
                raise CheckpointError(f"{path}, line {number}: not a checkpoint ({err})") from None
    return found


def _optional_str(value: Any) -> str | None:
    return None if value is None else str(value)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock beside the checkpoint file (the service and the CLI both write)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path.with_name(path.name + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _append(path: Path, checkpoint: Checkpoint) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, checkpoint.line().encode("utf-8"))
        os.fsync(fd)
    finally:
        os.close(fd)


def sign(
    key: Ed25519PrivateKey,
    seq: int,
    head_hash: str,
    at: datetime | None = None,
    *,
    merkle_root: str | None = None,
) -> Checkpoint:
    """A checkpoint of (``seq``, ``head_hash``, ``merkle_root``) signed with ``key`` now
    (or ``at``)."""
    moment = (at or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    unsigned = Checkpoint(seq, head_hash, moment, public_key_hex(key.public_key()), "", merkle_root)
    signature = key.sign(unsigned.message()).hex()
    return Checkpoint(seq, head_hash, moment, unsigned.key, signature, merkle_root)


def tree_root(session: Session, size: int) -> str:
    """The RFC 6962 tree head of audit records 1..``size``, in hex."""
    return merkle.root(audit.merkle_leaves(session, size)).hex()


def write(session: Session, key_path: Path, path: Path) -> Checkpoint | None:
    """Sign and append a checkpoint of the current head, if the chain grew since the last.

    The records since the previous checkpoint are verified first, from that checkpoint's
    record; a chain that fails is not signed and :class:`CheckpointError` says why.
    """
    key = signing_key(key_path)
    with _locked(path):
        previous = load(path)
        last = previous[-1] if previous else None
        start = (last.seq, last.hash) if last else (0, audit.GENESIS)
        if last is not None:
            result = _check_one(session, last)
            if result is not None:
                raise CheckpointError(f"not signing: {result}")
        checked = audit.verify(session, after=start)
        if not checked.ok:
            raise CheckpointError(f"not signing: record {checked.broken_seq}: {checked.problem}")
        seq, head_hash = checked.head or start
        if last is not None and seq == last.seq:
            return None
        checkpoint = sign(key, seq, head_hash, merkle_root=tree_root(session, seq))
        _append(path, checkpoint)
        return checkpoint


# ------------------------------------------------------------------ verification
def _check_one(session: Session, checkpoint: Checkpoint) -> str | None:
    """Why the database disagrees with one checkpoint, or None if it agrees."""
    if checkpoint.seq == 0:
        return None
    event = session.get(AuditEvent, checkpoint.seq)
    if event is None:
        stored_seq, stored_hash = audit.head(session)
        return (
            f"records cut from the end: the checkpoint signed at {checkpoint.at} vouches for "
            f"{checkpoint.seq} records ending in hash {checkpoint.hash}, but record "
            f"{checkpoint.seq} is gone (the head now says {stored_seq} records, hash "
            f"{stored_hash})"
        )
    if event.hash != checkpoint.hash:
        return (
            f"chain rewritten: record {checkpoint.seq} has hash {event.hash}, but the "
            f"checkpoint signed at {checkpoint.at} says {checkpoint.hash}"
        )
    return None


def verify(
    session: Session, checkpoints: list[Checkpoint], public_key: Ed25519PublicKey
) -> audit.Verification:
    """Check the chain itself, then hold it to every checkpoint signed by ``public_key``.

    A checkpoint with a bad signature, or out of order, is itself a finding: the file
    was tampered with. Between the newest checkpoint that agrees and the first that does
    not lies the rewritten part of the chain.
    """
    internal = audit.verify(session)
    if not internal.ok:
        return internal
    good: Checkpoint | None = None
    for number, checkpoint in enumerate(checkpoints, 1):
        if not checkpoint.signed_by(public_key):
            return audit.Verification(
                False,
                internal.checked,
                checkpoint.seq,
                f"checkpoint {number} (signed at {checkpoint.at}) does not carry a valid "
                f"signature of key {public_key_hex(public_key)}: the checkpoint file was "
                "altered",
                anchored=number - 1,
            )
        if good is not None and checkpoint.seq < good.seq:
            return audit.Verification(
                False,
                internal.checked,
                checkpoint.seq,
                f"checkpoint {number} (record {checkpoint.seq}) comes after one for record "
                f"{good.seq}: checkpoints out of order",
                anchored=number - 1,
            )
        problem = _check_one(session, checkpoint)
        if problem is not None:
            since = f"; record {good.seq} still matches the checkpoint of {good.at}" if good else ""
            return audit.Verification(
                False,
                internal.checked,
                checkpoint.seq,
                problem + since,
                anchored=number - 1,
            )
        good = checkpoint
    problem = _check_roots(session, checkpoints)
    if problem is not None:
        number, checkpoint, why = problem
        return audit.Verification(False, internal.checked, checkpoint.seq, why, anchored=number - 1)
    return audit.Verification(True, internal.checked, anchored=len(checkpoints), head=internal.head)


def _check_roots(
    session: Session, checkpoints: list[Checkpoint]
) -> tuple[int, Checkpoint, str] | None:
    """The first checkpoint whose Merkle root the records do not give, in one pass."""
    rooted = [(n, c) for n, c in enumerate(checkpoints, 1) if c.merkle_root is not None]
    if not rooted:
        return None
    frontier = merkle.Frontier()
    at = 0  # the next checkpoint of ``rooted`` to compare

    def compare() -> tuple[int, Checkpoint, str] | None:
        nonlocal at
        while at < len(rooted) and rooted[at][1].seq == frontier.size:
            number, checkpoint = rooted[at]
            computed = frontier.root().hex()
            if computed != checkpoint.merkle_root:
                return (
                    number,
                    checkpoint,
                    f"Merkle root of records 1..{checkpoint.seq} is {computed}, but the "
                    f"checkpoint signed at {checkpoint.at} says {checkpoint.merkle_root}",
                )
            at += 1
        return None

    found = compare()
    for leaf in audit.merkle_leaves(session, rooted[-1][1].seq):
        if found is not None:
            break
        frontier.add(leaf)
        found = compare()
    return found


def verify_installation(session: Session, key_path: Path, path: Path) -> audit.Verification:
    """:func:`verify` against the platform's own checkpoint file and signing key.

    With no checkpoints yet, the chain is checked on its own.
    """
    signed = load(path)
    if not signed:
        return audit.verify(session)
    return verify(session, signed, signing_key(key_path, create=False).public_key())


# --------------------------------------------------------- inclusion proofs
#: Names the format of an inclusion proof document (what ``shuyu audit prove`` prints).
PROOF_FORMAT = "shuyu-audit-inclusion-proof-v1"


def prove(session: Session, signed: list[Checkpoint], seq: int) -> dict[str, Any]:
    """An inclusion proof of record ``seq`` against the newest checkpoint that covers it.

    The document holds the record as stored, its leaf index, the sibling hashes up to
    the tree head, and the signed checkpoint; :func:`verify_proof` checks it with nothing
    else but the signer's public key. Raises :class:`CheckpointError` if no checkpoint
    with a Merkle root covers the record, or the records no longer give that root.
    """
    record = audit.proof_record(session, seq)
    if record is None:
        raise CheckpointError(f"no audit record {seq}")
    covering = [c for c in signed if c.merkle_root is not None and c.seq >= seq]
    if not covering:
        raise CheckpointError(
            f"no signed checkpoint with a Merkle root covers record {seq} yet; "
            "sign one with 'shuyu audit checkpoint'"
        )
    checkpoint = covering[-1]
    leaves = list(audit.merkle_leaves(session, checkpoint.seq))
    if merkle.root(leaves).hex() != checkpoint.merkle_root:
        raise CheckpointError(
            f"the records 1..{checkpoint.seq} no longer give the Merkle root the checkpoint "
            f"signed at {checkpoint.at} says: the log was altered; run 'shuyu audit verify'"
        )
    return {
        "format": PROOF_FORMAT,
        "record": record,
        "leaf_index": seq - 1,
        "tree_size": checkpoint.seq,
        "proof": [h.hex() for h in merkle.inclusion_proof(seq - 1, leaves)],
        "checkpoint": json.loads(checkpoint.line()),
    }


def verify_proof(document: Any, public_key: Ed25519PublicKey) -> str:
    """Check an inclusion proof (:func:`prove`) without the log; say what it proves.

    Raises :class:`CheckpointError` naming the first thing that does not hold: a
    malformed document, a checkpoint not signed by ``public_key``, a record whose
    content does not give its hash, or a path that does not lead to the signed root.
    """
    try:
        if document["format"] != PROOF_FORMAT:
            raise ValueError(f"format {document['format']!r}, expected {PROOF_FORMAT!r}")
        checkpoint = Checkpoint.from_fields(document["checkpoint"])
        record = dict(document["record"])
        claimed_hash = str(record.pop("hash"))
        seq = int(record["seq"])
        index, size = int(document["leaf_index"]), int(document["tree_size"])
        path = [bytes.fromhex(str(h)) for h in document["proof"]]
        leaf = merkle.leaf_hash(audit.leaf_data(record))
        computed_hash = audit.record_hash(record)
    except (KeyError, TypeError, ValueError, AttributeError) as err:
        raise CheckpointError(f"not an audit inclusion proof: {err!r}") from None
    if not checkpoint.signed_by(public_key):
        raise CheckpointError(
            f"the checkpoint is not signed by key {public_key_hex(public_key)}: it was "
            "altered, or another key signed it"
        )
    if checkpoint.merkle_root is None:
        raise CheckpointError("the checkpoint carries no Merkle root (signed before proofs)")
    if computed_hash != claimed_hash:
        raise CheckpointError(
            f"record {seq} altered: its content hashes to {computed_hash}, not {claimed_hash}"
        )
    if index != seq - 1 or size != checkpoint.seq:
        raise CheckpointError(
            f"the proof is for leaf {index} of {size}, but record {seq} is leaf {seq - 1} "
            f"and the checkpoint covers {checkpoint.seq} records"
        )
    if not merkle.verify_inclusion(index, size, leaf, path, bytes.fromhex(checkpoint.merkle_root)):
        raise CheckpointError(
            f"the proof does not lead from record {seq} to the Merkle root "
            f"{checkpoint.merkle_root} signed at {checkpoint.at}"
        )
    return (
        f"OK: record {seq} (hash {claimed_hash}) is in the audit log of {size} records "
        f"whose Merkle root {checkpoint.merkle_root} key {checkpoint.key} signed at "
        f"{checkpoint.at}"
    )
