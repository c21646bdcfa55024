from django.urls import path

from ovmweb.consoles import consumers

websocket_urlpatterns = [
    path("ws/console/vnc/<int:vm_id>/", consumers.VncConsoleConsumer.as_asgi()),
    path("ws/console/serial/<int:vm_id>/", consumers.SerialConsoleConsumer.as_asgi()),
]
