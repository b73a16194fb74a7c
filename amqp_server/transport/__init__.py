"""A client's TCP connection: handshake, heartbeats, frames to channels, write batching, flow (the read gate)."""
