"""The hub: the single owner of the site's record (people, templates, events, presence, attendance, alerts)."""
