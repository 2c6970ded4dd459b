"""RFC 6962 Merkle trees over the audit chain: one record's inclusion, without the log.

The hash chain (:mod:`.audit`) proves the log is intact only to someone who re-reads
all of it. A Merkle tree over the same records lets a signed checkpoint carry one root
from which any single record can be shown to be part of the log with about log2(n)
hashes: the record, its index, and the sibling hashes on its path to the root.

Hashing is that of RFC 6962 (Certificate Transparency), section 2.1, with SHA-256::

    leaf = SHA-256(0x00 || data)          node = SHA-256(0x01 || left || right)

and the tree of ``n`` leaves split at the largest power of two below ``n``; the root of
no leaves is SHA-256 of the empty string. Proof verification follows RFC 9162, 2.1.3.2.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence


def leaf_hash(data: bytes) -> bytes:
    """The hash of one leaf: SHA-256 of 0x00 and ``data``."""
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left: bytes, right: bytes) -> bytes:
    """The hash of an inner node: SHA-256 of 0x01 and its children's hashes."""
    return hashlib.sha256(b"\x01" + left + right).digest()


EMPTY_ROOT = hashlib.sha256(b"").digest()


class Frontier:
    """The root of a growing tree in O(log n) memory: leaf hashes are added in order.

    It holds the roots of the perfect subtrees that the binary spelling of the size
    splits the leaves into, largest (leftmost) first; :meth:`root` folds them right to
    left, which is exactly RFC 6962's split at the largest power of two.
    """

    def __init__(self) -> None:
        self.size = 0
        self._subtrees: list[tuple[int, bytes]] = []  # (leaf count, hash), left to right

    def add(self, leaf: bytes) -> None:
        """Append one leaf hash (already :func:`leaf_hash`-ed)."""
        count, digest = 1, leaf
        while self._subtrees and self._subtrees[-1][0] == count:
            left_count, left = self._subtrees.pop()
            count, digest = left_count + count, node_hash(left, digest)
        self._subtrees.append((count, digest))
        self.size += 1

    def root(self) -> bytes:
        """The tree head of the leaves added so far."""
        if not self._subtrees:
            return EMPTY_ROOT
        digest = self._subtrees[-1][1]
        for _, left in reversed(self._subtrees[:-1]):
            digest = node_hash(left, digest)
        return digest


def root(leaves: Iterable[bytes]) -> bytes:
    """The Merkle tree head (MTH) of ``leaves``, given as leaf hashes in order."""
    frontier = Frontier()
    for leaf in leaves:
        frontier.add(leaf)
    return frontier.root()


def _largest_power_below(n: int) -> int:
    """The largest power of two strictly less than ``n`` (n >= 2)."""
    return 1 << ((n - 1).bit_length() - 1)


def inclusion_proof(index: int, leaves: Sequence[bytes]) -> list[bytes]:
    """The audit path (RFC 6962, 2.1.1) of leaf ``index`` in the tree of ``leaves``."""
    if not 0 <= index < len(leaves):
        raise ValueError(f"leaf {index} is not in a tree of {len(leaves)} leaves")
    path: list[bytes] = []
    lo, hi = 0, len(leaves)
    while hi - lo > 1:  # walk down from the root, keeping the sibling subtrees' roots
        k = _largest_power_below(hi - lo)
        if index < lo + k:
            path.append(root(leaves[lo + k : hi]))
            hi = lo + k
        else:
            path.append(root(leaves[lo : lo + k]))
            lo = lo + k
    path.reverse()  # the proof lists siblings from the leaf upwards
    return path


def root_from_proof(index: int, size: int, leaf: bytes, proof: Sequence[bytes]) -> bytes:
    """The root that ``proof`` leads to from leaf hash ``leaf`` at ``index`` of ``size``.

    RFC 9162, 2.1.3.2. Raises :class:`ValueError` if the proof cannot belong to a tree
    of that size (wrong length for the index), whatever its hashes.
    """
    if not 0 <= index < size:
        raise ValueError(f"leaf {index} is not in a tree of {size} leaves")
    fn, sn = index, size - 1
    digest = leaf
    for sibling in proof:
        if len(sibling) != len(digest):
            raise ValueError("a proof hash is not 32 bytes")
        if sn == 0:
            raise ValueError("the proof is longer than the path of that leaf")
        if fn & 1 or fn == sn:
            digest = node_hash(sibling, digest)
            if not fn & 1:
                while fn and not fn & 1:
                    fn >>= 1
                    sn >>= 1
        else:
            digest = node_hash(digest, sibling)
        fn >>= 1
        sn >>= 1
    if sn != 0:
        raise ValueError("the proof is shorter than the path of that leaf")
    return digest


def verify_inclusion(
    index: int, size: int, leaf: bytes, proof: Sequence[bytes], expected_root: bytes
) -> bool:
    """Whether ``proof`` shows leaf hash ``leaf`` at ``index`` in the tree with that root."""
    try:
        return root_from_proof(index, size, leaf, proof) == expected_root
    except ValueError:
        return False
