"""Suite `realtime`: many connections holding live queries against the target durable node."""
