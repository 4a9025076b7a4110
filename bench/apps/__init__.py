"""Tiny WSGI apps used as raw baselines."""
