"""Generated gRPC stubs for the embedfleet.v1 API (see protos/; regenerate with scripts/gen_protos.sh)."""
