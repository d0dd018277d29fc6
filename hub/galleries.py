"""Galleries: every template of the site's face model, rebuilt when people change and published retained per device."""

from __future__ import annotations

import logging
import threading
from datetime import datetime

from edge.recognition.gallery import Gallery
from edge.recognition.gallery_codec import build_publication
from hub.context import HubContext

log = logging.getLogger("rollcall.hub")


class GalleryPublisher:
    """Publishes a new gallery version to every registered door when people or templates changed (and once at start)."""

    def __init__(self, context: HubContext) -> None:
        self.context = context
        self._dirty = threading.Event()
        self._dirty.set()

    def mark_dirty(self) -> None:
        """People or templates changed: rebuild and republish every device's gallery soon."""
        self._dirty.set()

    def publish_if_dirty(self, now: datetime) -> None:
        """Publish a new version when something changed since the last one."""
        if self._dirty.is_set():
            self._dirty.clear()
            self.publish(now)

    def current(self, version: int) -> Gallery:
        """The gallery of every template for this site's model."""
        store, model_id = self.context.store, self.context.model_id
        labels, embeddings = store.templates_for(model_id)
        names = {p.id: p.name or p.id for p in store.list_people()}
        if embeddings.size == 0:
            import numpy as np

            embeddings = np.zeros((0, self.context.embedding_size), dtype=np.float32)
        return Gallery(labels, embeddings, names=names, version=version, model_id=model_id)

    def publish(self, now: datetime) -> int:
        """Publish a new gallery version to every registered door, retained; returns the version.

        A device the store knows but the config does not list (:meth:`HubContext.registered`) gets nothing.
        """
        store, topics, publish = self.context.store, self.context.topics, self.context.publish
        version = int(store.get_meta("gallery_version") or "0") + 1
        gallery = self.current(version)
        for device in store.list_devices():
            if not self.context.registered(device.id):
                continue
            manifest, chunks = build_publication(gallery, device.id, now)
            for chunk in chunks:
                publish(topics.device_gallery_chunk(device.id, chunk.index), chunk, qos=1, retain=True)
            publish(topics.device_gallery(device.id), manifest, qos=1, retain=True)
            store.upsert_device(device.id, gallery_sent_version=version)
        store.set_meta("gallery_version", str(version))
        log.info("gallery version %d published (%d people)", version, len(gallery))
        return version
