"""The OpenADR 3.0.1 VTN (FastAPI + PostgreSQL): `create_app`, and `register_client` to let a
business-logic or VEN client fetch tokens."""

from services.dispatcher.vtn.app import BASE_PATH, create_app
from services.dispatcher.vtn.auth import register_client

__all__ = ["BASE_PATH", "create_app", "register_client"]
