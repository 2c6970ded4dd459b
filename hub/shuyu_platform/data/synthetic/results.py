"""What a twin build gives back: its report, or the error that stopped it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any


class SyntheticError(Exception):
    """A synthetic twin could not be built (raw file missing or unreadable, unsupported
    column type, or no way to invent values unlike the raw ones).

    Nothing was written: any previous twin at the target path is untouched.
    """


@dataclass(frozen=True)
class SyntheticReport:
    """What :func:`build_synthetic` did, for the command line and the audit record."""

    dataset: str
    policy_version: int
    raw_path: Path
    out_path: Path
    seed: int
    rows_raw: int
    """Rows of the raw file."""
    rows_out: int
    """Rows of the twin."""
    columns: dict[str, str]
    """How each column was drawn (``categorical``, ``quantiles``, ``fake:id_card``...)."""
    values_redrawn: int
    """Values redrawn because they equalled a raw value or repeated an identifier."""
    rows_redrawn: int
    """Rows redrawn because they equalled a raw row."""
    synthetic_sha256: str
    built_at: datetime
    elapsed_seconds: float

    @property
    def path(self) -> Path:
        """The twin's file (same as ``out_path``)."""
        return self.out_path

    @property
    def rows(self) -> int:
        """Rows of the twin (same as ``rows_out``)."""
        return self.rows_out

    def __str__(self) -> str:
        return (
            f"{self.dataset}: {self.rows_out:,} invented rows (raw {self.rows_raw:,}) "
            f"-> {self.out_path.name} in {self.elapsed_seconds:.1f} s"
        )

    def as_dict(self) -> dict[str, Any]:
        """The report as JSON-able data (paths and times as strings)."""
        data = asdict(self)
        data["raw_path"] = str(self.raw_path)
        data["out_path"] = str(self.out_path)
        data["built_at"] = self.built_at.isoformat()
        return data
