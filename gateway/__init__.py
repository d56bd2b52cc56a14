"""The gRPC gateway: validates, converts and delegates to a transport-free core (``service``)."""
