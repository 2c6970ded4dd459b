"""What leaves the domain: export requests frozen in the outbox, the automatic disclosure
checks, review decisions, watermarked release and download."""
