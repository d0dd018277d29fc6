"""The light core every role speaks: wire contract, topics, config machinery, the MQTT link, the hub request client."""
