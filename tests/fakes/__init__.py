"""Local stand-ins for the services the product talks to (fake Google gRPC servers on loopback)."""
