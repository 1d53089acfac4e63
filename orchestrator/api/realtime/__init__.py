"""``/v1/realtime``: the OpenAI Realtime WebSocket protocol on the cascade or the duplex back-end.

Client events: ``session.update``, ``input_audio_buffer.append|commit|clear``,
``conversation.item.create``, ``response.create|cancel``, ``conversation.item.truncate``.
Server events: ``session.created|updated``, ``input_audio_buffer.speech_started|
speech_stopped|committed|cleared``, ``conversation.item.created``,
``conversation.item.input_audio_transcription.completed``, ``response.created``,
``response.audio_transcript.delta``, ``response.audio.delta``, ``response.done``,
``conversation.item.truncated``, ``error``; ``conversation.item.input_audio_transcription.delta``
with a partial transcript while the user speaks, ``waking`` while hibernated engines load, and
``fallback`` when a role switches engines.
Audio is base64 PCM16 mono at 24 kHz both ways. Every client event is checked against the
``openai`` package's model of it first (beta, or GA for a client that sends ``session.type =
"realtime"``; that client also gets the GA event names): bad input gets an ``error`` event with
OpenAI's code and the field as ``param``, and the session goes on. ``turn_detection: null`` is
push-to-talk: the client commits each turn and asks for each reply. Every ``response.created``
is followed by exactly one ``response.done``; a ``response.create`` while one runs is refused
(``conversation_already_has_active_response``), as OpenAI does.

``session.backend`` (our extension, beta and GA shapes alike): ``"cascade"`` (the default,
ASR -> LLM -> TTS in turns) or ``"duplex"``: the full-duplex model (PersonaPlex), routed like
``/v1/duplex`` (to the cascade when the duplex engine is busy or down). Asking for ``"duplex"``
is allowed before the conversation starts (no audio appended, no item or response created); the
connection's cascade session is closed and ``instructions`` become the duplex persona's text
prompt (required). ``duplex`` serves the session from then on and lists what changes in the
protocol.

The modules, in the order a client event meets them:

    route       the upgrade, per-key and time limits, shutdown; one connection per socket
    schema      the ``openai`` package's models of the client events, and our extensions
    events      one frozen class per client event type, mapped from the validated model
    connection  the connection's state and a handler per client event type
    render      the cascade session's events as server events, one row per kind
    duplex      the duplex back-end, written against ``wire.ClientLink``
    wire        what they all send: server events, errors, response objects, GA names
"""
