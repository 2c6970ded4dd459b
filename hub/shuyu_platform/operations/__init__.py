"""Running the platform: metrics, alerts, the emergency plan, metering and fees, and
public disclosure (R15, R22, R24–R26)."""
