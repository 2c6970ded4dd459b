"""Shuyu's client for code running in a tenant's kernel.

It talks to the platform service over HTTP with the single-user server's hub token,
and imports nothing from the hub side or the DP engine: the kernel has only what the
platform API chooses to answer.

    import shuyu
    shuyu.catalogue()                        # the public dataset catalogue as a DataFrame
    shuyu.views.read("health_records")       # the tenant's masked view (see .data)
    shuyu.synthetic.read("health_records")   # the synthetic twin, for every tenant
    shuyu.imports.read("customers")          # the tenant's approved import (see .imports)
    shuyu.dp.query("health_records")...      # DP questions about the raw data (see .dp)
    shuyu.egress.request("a.ipynb", [3], purpose="...")  # take a result out (see .egress)
    shuyu.jobs.submit("a.ipynb", outputs=["out/*.csv"], purpose="...")  # sealed run (.jobs)
"""

from . import dp, egress, imports, jobs
from .client import PlatformError, catalogue, dataset
from .data import DataNotFound, synthetic, views

__all__ = [
    "DataNotFound",
    "PlatformError",
    "catalogue",
    "dataset",
    "dp",
    "egress",
    "imports",
    "jobs",
    "synthetic",
    "views",
]
