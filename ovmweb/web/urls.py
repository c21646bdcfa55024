from django.contrib.auth import views as auth_views
from django.urls import path
from django.views.generic import RedirectView

from ovmweb.accounts.forms import ThrottledAuthenticationForm

from .views import activity, audit, customizers, ha, infra, roles, vm_parts, vms

app_name = "web"
urlpatterns = [
    path("", RedirectView.as_view(pattern_name="web:vm_list"), name="home"),
    path(
        "login/",
        auth_views.LoginView.as_view(
            template_name="web/login.html",
            redirect_authenticated_user=True,
            # Says "too many attempts" when throttled (ovmweb.accounts.throttle).
            authentication_form=ThrottledAuthenticationForm,
        ),
        name="login",
    ),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    # Servers and VMs: virtual machine perspective
    path("vms/", vms.vm_list, name="vm_list"),
    path("vms/toolbar/", vms.vm_toolbar, name="vm_toolbar"),
    path("vms/new/", vms.vm_create_start, name="vm_create_start"),
    path("vms/new/<slug:source>/", vms.vm_create, name="vm_create"),
    path("vms/<int:vm_id>/row/", vms.vm_row, name="vm_row"),
    path("vms/<int:vm_id>/detail/", vms.vm_detail, name="vm_detail"),
    path("vms/<int:vm_id>/edit/", vms.vm_edit, name="vm_edit"),
    path("vms/<int:vm_id>/migrate/", vms.vm_migrate, name="vm_migrate"),
    path("vms/<int:vm_id>/clone/", vms.vm_clone, name="vm_clone"),
    path("vms/<int:vm_id>/backup/", vms.vm_backup, name="vm_backup"),
    path("vms/<int:vm_id>/move/", vms.vm_move, name="vm_move"),
    path("vms/<int:vm_id>/export/", vms.vm_export, name="vm_export"),
    path("vms/<int:vm_id>/messages/", vms.vm_messages, name="vm_messages"),
    path("vms/<int:vm_id>/delete/", vms.vm_delete, name="vm_delete"),
    path("vms/<int:vm_id>/customizers/", customizers.customizer_list, name="customizer_list"),
    path("vms/<int:vm_id>/customizers/new/", customizers.customizer_create, name="customizer_create"),
    path("customizers/<int:customizer_id>/edit/", customizers.customizer_edit, name="customizer_edit"),
    path("customizers/<int:customizer_id>/delete/", customizers.customizer_delete, name="customizer_delete"),
    path("vms/<int:vm_id>/action/<slug:action>/", vms.vm_action, name="vm_action"),
    path("vms/<int:vm_id>/vnics/add/", vm_parts.vnic_add, name="vnic_add"),
    path("vms/<int:vm_id>/disks/attach/", vm_parts.disk_attach, name="disk_attach"),
    path("disk-slots/<int:slot_id>/detach/", vm_parts.disk_detach, name="disk_detach"),
    path("vnics/<int:vnic_id>/delete/", vm_parts.vnic_delete, name="vnic_delete"),
    # Servers perspective
    path("servers/", infra.server_list, name="server_list"),
    path("servers/discover/", infra.server_discover, name="server_discover"),
    path("servers/discover/host-key/", infra.server_scan_host_key, name="server_scan_host_key"),
    path("servers/<int:server_id>/", infra.server_detail, name="server_detail"),
    path("servers/<int:server_id>/inbound-lock/", infra.server_inbound_lock, name="server_inbound_lock"),
    path("servers/<int:server_id>/maintenance/", ha.server_maintenance, name="server_maintenance"),
    path("servers/<int:server_id>/delete/", infra.server_delete, name="server_delete"),
    path("nav/", infra.nav_tree, name="nav_tree"),
    path("pools/new/", infra.pool_create, name="pool_create"),
    path("pools/<int:pool_id>/", infra.pool_detail, name="pool_detail"),
    path("pools/<int:pool_id>/roles/", roles.pool_roles, name="pool_roles"),
    path("pools/<int:pool_id>/policies/", ha.pool_policies, name="pool_policies"),
    path("pools/<int:pool_id>/roles/<int:role_id>/remove/", roles.pool_role_remove, name="pool_role_remove"),
    # Repositories
    path("repositories/", infra.repository_list, name="repository_list"),
    path("repositories/<int:repo_id>/", infra.repository_detail, name="repository_detail"),
    path("repositories/<int:repo_id>/refresh/", infra.repository_refresh, name="repository_refresh"),
    path("repositories/<int:repo_id>/isos/upload/", infra.iso_upload, name="iso_upload"),
    path("repositories/<int:repo_id>/isos/import/", infra.iso_import, name="iso_import"),
    path("repositories/<int:repo_id>/appliances/import/", infra.appliance_import, name="appliance_import"),
    path("appliances/<int:appliance_id>/delete/", infra.appliance_delete, name="appliance_delete"),
    path("repositories/<int:repo_id>/disks/new/", infra.disk_create, name="disk_create"),
    path("disks/<int:disk_id>/flatten/", infra.disk_flatten, name="disk_flatten"),
    # Networking
    path("networks/", infra.network_list, name="network_list"),
    path("networks/<int:network_id>/delete/", infra.network_delete, name="network_delete"),
    # Jobs and events
    path("jobs/", activity.job_list, name="job_list"),
    path("jobs/panel/", activity.job_panel, name="job_panel"),
    path("jobs/<int:job_id>/", activity.job_detail, name="job_detail"),
    path("jobs/<int:job_id>/abort/", activity.job_abort, name="job_abort"),
    path("events/", activity.event_list, name="event_list"),
    path("events/<int:event_id>/acknowledge/", activity.event_acknowledge, name="event_acknowledge"),
    path("audit/", audit.audit_list, name="audit_list"),
]
