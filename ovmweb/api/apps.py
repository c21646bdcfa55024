from django.apps import AppConfig


class ApiConfig(AppConfig):
    name = "ovmweb.api"
    label = "api"
