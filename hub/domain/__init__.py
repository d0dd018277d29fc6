"""The hub's pure rules: presence from sightings, attendance days, and the site's time zone (no store, no MQTT)."""
