"""The gRPC edge: one servicer module per service (<service>_service.py).

Handlers only parse and validate (validate.py), authorise (auth.py), call the
area below and render the answer (core/render). A Refusal raised anywhere
below becomes a google.rpc.Status once, in errors.py. Nothing below imports
this package; no SQL is written here.
"""
