"""The HTTP API: ``create_app(settings, engine)`` builds the FastAPI application."""

from __future__ import annotations

from amigate.api.app import create_app

__all__ = ["create_app"]
