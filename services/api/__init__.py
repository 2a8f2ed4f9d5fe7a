"""The platform's API (FastAPI): one application and one authentication scheme for the owner
portal, and next the operations dashboard, the bidding API and the OpenADR VTN."""
