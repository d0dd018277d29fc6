"""The key footer: Textual's Footer, without the memory it keeps of every key it ever showed."""

from __future__ import annotations

from textual.widgets import Footer


class KeyFooter(Footer):
    """Textual's Footer, forgetting the keys it removed.

    The Footer composes its keys again whenever the bindings change (every switch of screen moves the focus), and
    each new key binds itself to the footer's ``compact`` setting. Textual (8.2) drops such a binding only when
    ``compact`` changes, which it never does here, so every key ever shown stayed in memory with its rendering
    caches: about 0.5 MB per switch of screen. After each recompose the bindings of keys no longer shown go.
    """

    async def recompose(self) -> None:
        await super().recompose()
        self.forget_removed_keys()

    def forget_removed_keys(self) -> int:
        """Drop the ``compact`` bindings of keys that are no longer mounted; returns how many went."""
        # textual.reactive keeps the watchers of an object's reactives in its "__watchers" attribute.
        watchers: dict[str, list[tuple[object, object]]] = getattr(self, "__watchers", {})
        dropped = 0
        for entries in watchers.values():
            kept = [
                (node, callback) for node, callback in entries if node is self or getattr(node, "is_attached", True)
            ]
            dropped += len(entries) - len(kept)
            entries[:] = kept
        return dropped
