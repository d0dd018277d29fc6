"""The supervisor's terminal UI (Textual), fed by the broker and the hub's request API."""
