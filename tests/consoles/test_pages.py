import pytest

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("suffix", ["console", "serial-console"])
def test_pages_need_login_and_permission(client, stranger, operator, local_server, running_vm, suffix):
    vm = running_vm(local_server, 10005)
    url = f"/vms/{vm.pk}/{suffix}/"
    assert client.get(url).status_code == 302
    client.force_login(stranger)
    assert client.get(url).status_code == 403
    client.force_login(operator)
    response = client.get(url)
    assert response.status_code == 200
    html = response.content.decode()
    assert vm.name in html and "RUNNING" in html
    assert f"/api/v1/vms/{vm.pk}/console-tickets/" in html


def test_vendor_libraries_are_served(client, operator):
    client.force_login(operator)
    for path in (
        "/static/vendor/@novnc/novnc/core/rfb.js",
        "/static/vendor/@xterm/xterm/lib/xterm.js",
        "/static/vendor/@xterm/addon-fit/lib/addon-fit.js",
        "/static/consoles/vnc.js",
    ):
        response = client.get(path)
        assert response.status_code == 200, path
