"""The reliability suite (``make reliability``): kills, cuts, full disks, damaged files, floods and power loss."""
