"""The gRPC search service: server, servicer, query planning, annotation, errors."""
