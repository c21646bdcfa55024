"""WebSocket routes of every package, gathered in one place."""

from ovmweb.consoles.routing import websocket_urlpatterns as console_routes
from ovmweb.web.routing import websocket_urlpatterns as web_routes

websocket_urlpatterns = [*console_routes, *web_routes]
