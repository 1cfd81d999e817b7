"""The fleet simulator: many real agents against a real broker, with scripted faults."""
