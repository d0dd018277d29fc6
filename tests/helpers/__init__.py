"""Helpers the tests share: real brokers on loopback, MQTT probes, subprocess clients."""
