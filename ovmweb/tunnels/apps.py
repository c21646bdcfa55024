from django.apps import AppConfig


class TunnelsConfig(AppConfig):
    name = "ovmweb.tunnels"
    label = "tunnels"
