"""Shuyu's client for code running in a tenant's kernel.

It talks to the platform service over HTTP with the single-user server's hub token,
and imports nothing from the hub side or the DP engine: the kernel has only what the
platform API chooses to answer.

    import shuyu
    shuyu.catalogue()            # the public dataset catalogue as a DataFrame
"""

from .client import PlatformError, catalogue, dataset

__all__ = ["PlatformError", "catalogue", "dataset"]
