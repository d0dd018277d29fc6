"""The TUI's widgets: incremental tables and their text formats, pictures, dialogs and workstation cards."""
