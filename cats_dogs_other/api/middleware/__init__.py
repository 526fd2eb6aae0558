"""What sits between the server and the routes: request heads, framing, disconnects, tracing,
the access log and uvicorn's protocols with deadlines. Each module does one thing to every
request, as Starlette's ``middleware/`` does."""
