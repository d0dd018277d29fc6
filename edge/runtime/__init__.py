"""What every device process shares: the outbox, the ordered publisher, systemd notify, health readings, launching."""
