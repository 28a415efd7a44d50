"""Who may talk to the line, and what it costs them when they should not.

- `signatures`: Twilio's request signatures, the public URLs they cover, SIDs.
- `tokens`: the per-call stream token, and where spent tokens are kept (Redis or the process).
- `livecalls`: at most one live stream per call, and an ended call stays ended.
- `fields`: what the webhooks accept in their form fields.
- `guard`: unsigned webhooks refused on the event loop, before Django.
- `pending`: sockets that have not sent `start` yet, bounded.
- `ratelimit`: the token bucket behind the flood limits.
- `refusals`: refusals logged at a bounded rate.
"""
