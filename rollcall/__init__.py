"""rollcall: who is in the building, from face recognition at the doors; the ``rollcall`` command lives here."""

__version__ = "0.1.0"
