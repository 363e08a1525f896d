"""Media doors other than SIP: Twilio-style WebSocket media streams and Asterisk AudioSocket.

`add_media_routes(app, call_factory)` (telephony.websocket.routes) plugs both into the gateway's aiohttp app.
"""
