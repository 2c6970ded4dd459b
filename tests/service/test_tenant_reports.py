"""The per-user sliding window that limits what a sandbox may report."""

from __future__ import annotations

from shuyu_platform.service.tenant_reports import ReportLimiter


def test_a_user_gets_the_limit_a_minute_and_one_refusal_is_flagged_a_minute() -> None:
    limiter = ReportLimiter(per_minute=3)
    admitted = [limiter.admit("carol", now=100.0 + i) for i in range(5)]
    assert admitted == [(True, False)] * 3 + [(False, True), (False, False)]
    # Another user has a window of its own.
    assert limiter.admit("alice", now=104.0) == (True, False)
    # A minute after each report its slot is free again (101 and 102 still count).
    assert limiter.admit("carol", now=160.5) == (True, False)
    assert limiter.admit("carol", now=161.5) == (True, False)
    assert limiter.admit("carol", now=161.9) == (False, False)  # flagged at 103 already
    # More than a minute after the last flagged refusal, the next one is flagged again.
    assert limiter.admit("carol", now=163.5) == (True, False)  # 102 has left the window
    assert limiter.admit("carol", now=163.6) == (False, True)
