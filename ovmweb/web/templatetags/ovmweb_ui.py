from django import template

from ..ui import human_bytes, vm_form_actions

register = template.Library()


@register.filter
def bytes_h(value):
    return human_bytes(value)


@register.filter
def mib_h(value):
    return human_bytes(value * 1024 * 1024) if value is not None else ""


@register.filter
def status_class(value):
    """CSS modifier for a status or severity badge."""
    v = str(value or "").upper()
    if v in {"RUNNING", "SUCCESS", "INFO"}:
        return "ok" if v != "INFO" else "info"
    if v in {"STARTING", "STOPPING", "QUEUED", "DISCOVERING", "WARNING", "MAINTENANCE"}:
        return "busy" if v != "WARNING" else "warn"
    if v in {"FAILURE", "ERROR", "CRITICAL", "UNREACHABLE"}:
        return "bad"
    if v in {"SUSPENDED", "ABORTED"}:
        return "warn"
    if v == "TEMPLATE":
        return "tmpl"
    return "off"


@register.simple_tag
def sort_link(current_sort, key):
    """Query value for clicking column ``key``: ascending first, then toggles."""
    return f"-{key}" if current_sort == key else key


@register.filter
def get(mapping, key):
    try:
        return mapping.get(key)
    except AttributeError:
        return None


@register.filter
def get_field(form, name):
    """The bound field ``name`` of ``form`` (for fields chosen at run time)."""
    return form[name]


@register.simple_tag(takes_context=True)
def page_url(context):
    """The path of the page in the browser (for ``next``), also inside an htmx fragment."""
    request = context["request"]
    htmx = getattr(request, "htmx", None)
    if htmx and htmx.current_url_abs_path:
        return htmx.current_url_abs_path
    return request.get_full_path()


@register.simple_tag
def vm_form_action_links(vm):
    """Migrate, clone, back up, move, export, messages: links with their enabled state."""
    return vm_form_actions(vm)
