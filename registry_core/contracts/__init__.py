"""Wire contracts shared by the worker, the API and the client: the codec and the HTTP models."""
