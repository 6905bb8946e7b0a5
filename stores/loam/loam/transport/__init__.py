"""Connectors between ephemeral and durable nodes, on top of `loam.protocol`.

- `inprocess`: `InProcessServer(node)` / `InProcessConnector` (asyncio queues, same codec,
  optional one-way `delay_s`);
- `websocket`: `NodeServer(node, host, port, token)` / `WebSocketConnector(url, token=)`;
- `service` (server side) and `client` (client side, with `pending`: a Future per open
  request, timeouts) are shared by both.
"""
