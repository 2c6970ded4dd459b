"""Showcase dashboards: publishing approved notebooks and the Voila service that shows them
with sandboxed kernels."""
