"""Shuyu's hub side: configuration, accounts, spawning, the platform service, audit.

Runs next to JupyterHub, outside every sandbox. Nothing in a tenant's kernel or
single-user server imports this package.
"""

__version__ = "0.1.0"
