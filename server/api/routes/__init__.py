"""One module per resource; each only parses input, calls a service, shapes output."""
