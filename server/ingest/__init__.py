"""Device messages in: validate (pure), batch, write; one consumer thread, never the MQTT one."""
