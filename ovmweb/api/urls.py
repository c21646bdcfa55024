from django.urls import include, path
from drf_spectacular.views import SpectacularAPIView, SpectacularSwaggerView
from rest_framework.routers import DefaultRouter

from ovmweb.accounts.api import TokenCreateView
from ovmweb.consoles.api import ConsoleTicketCreateView, ConsoleViewersView
from ovmweb.metrics import api as metrics

from .views import (
    appliances,
    audit,
    customizers,
    jobs,
    networks,
    pools,
    repositories,
    servers,
    storage,
    vm_message_log,
    vms,
)

app_name = "api"

router = DefaultRouter()
router.register("server-pools", pools.ServerPoolViewSet, basename="server-pool")
router.register("servers", servers.ServerViewSet, basename="server")
router.register(
    "processor-compatibility-groups", pools.ProcessorCompatibilityGroupViewSet, basename="compatibility-group"
)
router.register("anti-affinity-groups", pools.AntiAffinityGroupViewSet, basename="anti-affinity-group")
router.register("repositories", repositories.RepositoryViewSet, basename="repository")
router.register("virtual-disks", storage.VirtualDiskViewSet, basename="virtual-disk")
router.register("iso-files", storage.IsoFileViewSet, basename="iso-file")
router.register("networks", networks.NetworkViewSet, basename="network")
router.register("vnics", networks.VnicViewSet, basename="vnic")
router.register("vms", vms.VirtualMachineViewSet, basename="vm")
router.register("clone-customizers", customizers.CloneCustomizerViewSet, basename="clone-customizer")
router.register("virtual-appliances", appliances.VirtualApplianceViewSet, basename="virtual-appliance")
router.register("jobs", jobs.JobViewSet, basename="job")
router.register("events", jobs.EventViewSet, basename="event")
router.register("audit", audit.AuditRecordViewSet, basename="audit-record")

urlpatterns = [
    path("schema/", SpectacularAPIView.as_view(), name="schema"),
    path("docs/", SpectacularSwaggerView.as_view(url_name="api:schema"), name="docs"),
    path("mac-range/", networks.MacRangeView.as_view(), name="mac-range"),
    path("tokens/", TokenCreateView.as_view(), name="tokens"),
    path("vms/<int:pk>/console-tickets/", ConsoleTicketCreateView.as_view(), name="vm-console-tickets"),
    path("vms/<int:pk>/console-viewers/", ConsoleViewersView.as_view(), name="vm-console-viewers"),
    path("vms/<int:pk>/message-log/", vm_message_log.VmMessageLogView.as_view(), name="vm-message-log"),
    path("vms/<int:pk>/metrics/", metrics.VmMetricsView.as_view(), name="vm-metrics"),
    path("servers/<int:pk>/metrics/", metrics.ServerMetricsView.as_view(), name="server-metrics"),
    path("repositories/<int:pk>/metrics/", metrics.RepositoryMetricsView.as_view(), name="repository-metrics"),
    path("vms/sparklines/", metrics.VmSparklinesView.as_view(), name="vm-sparklines"),
    path("servers/sparklines/", metrics.ServerSparklinesView.as_view(), name="server-sparklines"),
    path("", include(router.urls)),
]
