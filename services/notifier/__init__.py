"""notifier: the reference SMS/12368 notifier, an external-style consumer of SMS requests."""
