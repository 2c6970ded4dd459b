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

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from sqlalchemy.orm import Session

from . import audit
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

    def message(self) -> bytes:
        """The exact bytes signed: the domain prefix and the canonical JSON of the claim."""
        claim = {"seq": self.seq, "hash": self.hash, "at": self.at}
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
        return json.dumps(asdict(self), sort_keys=True, separators=(",", ":")) + "\n"


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
                fields = json.loads(text)
                found.append(
                    Checkpoint(
                        seq=int(fields["seq"]),
                        hash=str(fields["hash"]),
                        at=str(fields["at"]),
                        key=str(fields["key"]),
                        signature=str(fields["signature"]),
                    )
                )
            except (ValueError, KeyError, TypeError) as err:
                raise CheckpointError(f"{path}, line {number}: not a checkpoint ({err})") from None
    return found


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
    key: Ed25519PrivateKey, seq: int, head_hash: str, at: datetime | None = None
) -> Checkpoint:
    """A checkpoint of (``seq``, ``head_hash``) signed with ``key`` now (or ``at``)."""
    moment = (at or datetime.now(UTC)).astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    unsigned = Checkpoint(seq, head_hash, moment, public_key_hex(key.public_key()), "")
    return Checkpoint(seq, head_hash, moment, unsigned.key, key.sign(unsigned.message()).hex())


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
        checkpoint = sign(key, seq, head_hash)
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
    return audit.Verification(True, internal.checked, anchored=len(checkpoints), head=internal.head)


def verify_installation(session: Session, key_path: Path, path: Path) -> audit.Verification:
    """:func:`verify` against the platform's own checkpoint file and signing key.

    With no checkpoints yet, the chain is checked on its own.
    """
    signed = load(path)
    if not signed:
        return audit.verify(session)
    return verify(session, signed, signing_key(key_path, create=False).public_key())
