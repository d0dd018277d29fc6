"""What runs on a device (door service, workstation agent, recognition), and the protocol every role speaks."""
