"""The platform service: Shuyu's API and pages behind the hub at ``/services/shuyu/``.

A hub-managed service in its own process. People reach it through the hub's OAuth,
programs with a hub API token; it authorises every request by the ``custom:shuyu:*``
scopes on that token and keeps no password store of its own.
"""
