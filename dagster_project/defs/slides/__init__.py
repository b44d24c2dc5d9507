"""Slides stage: the slide manifest, ingested slide images, and the inbox sensor."""
