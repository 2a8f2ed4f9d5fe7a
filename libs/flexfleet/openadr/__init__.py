"""OpenADR 3 objects, targeting, pagination and scopes: the pure side of the dispatcher's
VTN (services.dispatcher.vtn is its HTTP and database shell)."""
