"""What every part of the platform stands on: settings, the database and its models,
the audit chain, atomic files, roles, accounts, the hub API client and the calendar
of working days."""
