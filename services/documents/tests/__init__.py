"""Tests of the documents service."""
