"""Sealed production runs: merchant code on full-fidelity inputs, results only via review."""
