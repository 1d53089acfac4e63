"""``/v1/realtime``: the OpenAI Realtime protocol on the cascade or the duplex back-end."""
