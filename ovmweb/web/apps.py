from django.apps import AppConfig


class WebConfig(AppConfig):
    name = "ovmweb.web"
    label = "web"
