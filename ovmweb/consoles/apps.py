from django.apps import AppConfig


class ConsolesConfig(AppConfig):
    name = "ovmweb.consoles"
    label = "consoles"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self):
        from django.contrib.auth.signals import user_logged_out

        from ovmweb.consoles.signals import on_user_logged_out

        user_logged_out.connect(on_user_logged_out, dispatch_uid="ovmweb.consoles.close_on_logout")
