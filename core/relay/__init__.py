"""The JetStream relay: the outbox, fanned out to NATS JetStream.

Owns publishing outbox events, in sequence order, to one JetStream stream;
never the outbox itself (the source of truth, which StreamEvents and the
webhooks keep reading) and never what consumers do with the messages.

Exactly one replica relays (leadership role `relay`). Each event is one
message on `<prefix>.<merchant>.<event type>` (kassa.events.acme.invoice.paid)
with `Nats-Msg-Id` = the event id, so a re-publish after a crash is dropped by
the stream's duplicate window, and `Nats-Expected-Last-Msg-Id` = the previous
event's id, so the stream itself refuses a message that would leave a gap or
land out of order (a second relay, a publish retried after a later one). The
resume point is read from the stream (its last message's Kassa-Sequence),
never from a cursor written beside it: what the stream holds is what was
published. Off unless [jetstream] is configured.

Modules: subjects (pure: subject and headers of an event, where to resume),
settings ([jetstream]), relay (the one writer to the stream).
"""
