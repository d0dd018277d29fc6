"""The workstation agent (``rollcall agent run``): screen thumbnails, activity, file changes, commands.

It runs visibly in the user's desktop session and reuses the door device's outbox and MQTT link. See docs/agent.md.
"""
