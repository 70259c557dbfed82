"""Open-model load generator for the messaging backend (``msgctl loadtest``).

Sends go out on a fixed schedule whatever the answers, so slow answers show
up as latency instead of as a lower rate; every latency is measured from the
moment the request was due, not from when the client got round to it.
"""
