from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from ovmweb.consoles.api import ConsoleTicketCreateView

from . import views

app_name = "api"

router = DefaultRouter()
router.register("server-pools", views.ServerPoolViewSet, basename="server-pool")
router.register("servers", views.ServerViewSet, basename="server")
router.register(
    "processor-compatibility-groups", views.ProcessorCompatibilityGroupViewSet, basename="compatibility-group"
)
router.register("anti-affinity-groups", views.AntiAffinityGroupViewSet, basename="anti-affinity-group")
router.register("repositories", views.RepositoryViewSet, basename="repository")
router.register("virtual-disks", views.VirtualDiskViewSet, basename="virtual-disk")
router.register("iso-files", views.IsoFileViewSet, basename="iso-file")
router.register("networks", views.NetworkViewSet, basename="network")
router.register("vnics", views.VnicViewSet, basename="vnic")
router.register("vms", views.VirtualMachineViewSet, basename="vm")
router.register("clone-customizers", views.CloneCustomizerViewSet, basename="clone-customizer")
router.register("virtual-appliances", views.VirtualApplianceViewSet, basename="virtual-appliance")
router.register("jobs", views.JobViewSet, basename="job")
router.register("events", views.EventViewSet, basename="event")

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
    path("mac-range/", views.MacRangeView.as_view(), name="mac-range"),
    path("vms/<int:pk>/console-tickets/", ConsoleTicketCreateView.as_view(), name="vm-console-tickets"),
    path("", include(router.urls)),
]
