"""delivery: electronic service of documents and the notification hub (portal inbox, SMS)."""
