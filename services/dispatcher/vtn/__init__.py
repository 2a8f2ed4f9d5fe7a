"""The OpenADR 3 VTN (FastAPI + PostgreSQL), 3.0.1 and 3.1.0 on one store: `create_app`, and
`register_client` to let a business-logic or VEN client fetch tokens."""

from services.dispatcher.vtn.app import BASE_PATH, BASE_PATH_310, create_app
from services.dispatcher.vtn.auth import register_client

__all__ = ["BASE_PATH", "BASE_PATH_310", "create_app", "register_client"]
