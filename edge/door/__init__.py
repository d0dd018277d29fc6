"""The door device service (``rollcall edge run``): config, service wiring, events, commands, frame sources."""
