"""A DP engine for crash tests: OpenDP's, with a pause, a hold or a failure on request.

The platform service loads it through ``Shuyu.dp_engine`` (this folder on its
``PYTHONPATH``). It answers exactly as :class:`OpenDpEngine` does, except for a query
whose ``alpha`` is one of three marker values: it then sleeps before answering (so a test
can kill the service while a debited query is computing), waits while a file exists (so
a test decides when its queries may finish), or raises (so a test can see a failure
after the debit settled). Only the timing and the failure are staged; the hub,
the service, the ledger and the database are the real ones.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from shuyu_platform.dp.engine import Answer, Source
from shuyu_platform.dp.opendp_engine import OpenDpEngine
from shuyu_platform.dp.query import QuerySpec

#: ``alpha`` of a query that pauses for ``SHUYU_TEST_ENGINE_PAUSE`` seconds (default 60).
PAUSE_ALPHA = 0.0321
#: ``alpha`` of a query whose computation fails after its debit.
FAIL_ALPHA = 0.0123
#: ``alpha`` of a query held on its compute thread while the file :data:`HOLD_FILE`
#: exists in the state root (at most :data:`HOLD_SECONDS`), then answered.
HOLD_ALPHA = 0.0456
HOLD_FILE = "test-engine-hold"
HOLD_SECONDS = 120


class StagedEngine(OpenDpEngine):
    """:class:`OpenDpEngine` that pauses or fails when a query's alpha asks it to."""

    name = "opendp-polars-staged"

    def answer(self, source: Source, spec: QuerySpec) -> Answer:
        """Pause or fail on a marker alpha, then answer as OpenDP does."""
        if spec.alpha == PAUSE_ALPHA:
            time.sleep(float(os.environ.get("SHUYU_TEST_ENGINE_PAUSE", "60")))
        if spec.alpha == HOLD_ALPHA:
            held = Path(os.environ["SHUYU_HOME"]) / HOLD_FILE
            until = time.monotonic() + HOLD_SECONDS
            while held.exists() and time.monotonic() < until:
                time.sleep(0.05)
        if spec.alpha == FAIL_ALPHA:
            raise RuntimeError("staged failure after the debit (row 17 of the raw file)")
        return super().answer(source, spec)
