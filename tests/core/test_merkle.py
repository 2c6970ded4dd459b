"""RFC 6962 Merkle trees: known tree heads, proofs for every leaf, tampering refused."""

from __future__ import annotations

import pytest

from shuyu_platform.core import merkle

#: The eight leaves and the tree heads of their first 1..8 that Certificate
#: Transparency's reference implementations test against.
LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
]
ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]


def test_known_tree_heads() -> None:
    hashed = [merkle.leaf_hash(leaf) for leaf in LEAVES]
    assert merkle.root([]).hex() == (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    for size, expected in enumerate(ROOTS, 1):
        assert merkle.root(hashed[:size]).hex() == expected


@pytest.mark.parametrize("size", [1, 2, 3, 5, 7, 8, 13, 64, 100])
def test_every_leaf_proves_and_nothing_else_does(size: int) -> None:
    hashed = [merkle.leaf_hash(str(i).encode()) for i in range(size)]
    head = merkle.root(hashed)
    for index in range(size):
        proof = merkle.inclusion_proof(index, hashed)
        assert len(proof) <= (size - 1).bit_length()
        assert merkle.verify_inclusion(index, size, hashed[index], proof, head)
        # another leaf, another index, a changed, missing or extra sibling: refused (the
        # tree size is bound by the signed checkpoint, not by the path)
        other = merkle.leaf_hash(b"forged")
        assert not merkle.verify_inclusion(index, size, other, proof, head)
        if size > 1:
            wrong = (index + 1) % size
            assert not merkle.verify_inclusion(wrong, size, hashed[index], proof, head)
            bent = [bytes([proof[0][0] ^ 1]) + proof[0][1:], *proof[1:]]
            assert not merkle.verify_inclusion(index, size, hashed[index], bent, head)
            assert not merkle.verify_inclusion(index, size, hashed[index], proof[:-1], head)
            longer = [*proof, proof[-1]]
            assert not merkle.verify_inclusion(index, size, hashed[index], longer, head)


def test_a_leaf_outside_the_tree_has_no_proof() -> None:
    with pytest.raises(ValueError, match="not in a tree"):
        merkle.inclusion_proof(3, [merkle.leaf_hash(b"x")] * 3)
    assert not merkle.verify_inclusion(3, 3, merkle.leaf_hash(b"x"), [], merkle.EMPTY_ROOT)
