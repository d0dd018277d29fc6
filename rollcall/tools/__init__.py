"""Tools that never run on a door: the door-clip generator and the hub stand-in used by tests and benchmarks."""
