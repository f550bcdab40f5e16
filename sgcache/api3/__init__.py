"""The JSON-RPC protocol: envelope, dispatch, faults, authentication, passthrough and writes."""
