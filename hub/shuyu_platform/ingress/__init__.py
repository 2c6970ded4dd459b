"""Data coming in from merchants (R21): import requests, their automatic checks in the
parsing jail, review, the immutable store and the read-only mount in the tenant's
sandboxes. See :mod:`.imports` (the lifecycle) and :mod:`.jailed` (what runs in the jail).
"""
