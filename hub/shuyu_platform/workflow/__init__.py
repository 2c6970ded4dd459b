"""The review workflows that are not egress: scenario applications and merchant
registration, and the transition rules every workflow shares."""
