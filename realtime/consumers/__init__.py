"""One thin consumer module per WebSocket dialect, each over the shared gateway core (realtime.gateway)."""
