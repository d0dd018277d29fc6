"""Alerts: work schedules, rule settings and their versions, the rules, the alert book, and the running alerting."""
