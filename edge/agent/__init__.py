"""The workstation agent (``rollcall agent run``): screen thumbnails, activity, file changes, commands.

It runs visibly in the user's desktop session and shares the device runtime (outbox, publisher, MQTT link) with the
door device. See docs/agent.md.
"""
