"""Moss: a self-hosted bilingual chat assistant that learns from feedback."""

__version__ = "0.1.0"
