"""filing: online filing applications, registry review, docketing and case numbers."""
