from django.urls import path

from ovmweb.consoles import views

app_name = "consoles"
urlpatterns = [
    path("vms/<int:vm_id>/console/", views.vnc_console, name="vnc"),
    path("vms/<int:vm_id>/serial-console/", views.serial_console, name="serial"),
]
