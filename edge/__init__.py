"""The door device and the workstation agent, plus the pieces every role shares (wire contract, config, MQTT link)."""
