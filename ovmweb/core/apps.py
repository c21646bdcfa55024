from django.apps import AppConfig


class CoreConfig(AppConfig):
    name = "ovmweb.core"
    label = "core"
