"""Uploads (ISO and OVA, API and web page) cannot fill the manager's disk: a size cap and a
free-space check before anything is staged, and the staged file is removed when its job
ends, however it ends."""

import json
from pathlib import Path

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from ovmweb.inventory import staging
from ovmweb.jobs.choices import JobStatus
from ovmweb.jobs.models import Job
from ovmweb.jobs.services import job_finish, job_request_abort, job_submit
from ovmweb.jobs.testing import run_pending_jobs
from tests.api.test_appliances import ova_bytes

pytestmark = pytest.mark.django_db

MIB = 1024 * 1024


@pytest.fixture
def area(settings, tmp_path):
    """An empty staging area of the test's own; generous limits unless a test lowers them."""
    settings.OVMWEB_UPLOAD_STAGING_DIR = str(tmp_path / "staging")
    settings.OVMWEB_UPLOAD_MAX_BYTES = 64 * 1024**3
    settings.OVMWEB_UPLOAD_STAGING_RESERVE_BYTES = 0
    return staging.staging_dir()


def contents(area: Path) -> list[Path]:
    return sorted(area.iterdir())


def iso(size: int, name: str = "big.iso") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, b"\0" * size, content_type="application/octet-stream")


def post_iso(api, repo, size: int, name: str = "big.iso"):
    return api.post("/api/v1/iso-files/", {"repository": repo.pk, "file": iso(size, name)}, format="multipart")


# --- the cap -------------------------------------------------------------------


def test_declared_length_over_the_cap_is_413_before_parsing(api, repo, area, settings):
    settings.OVMWEB_UPLOAD_MAX_BYTES = MIB
    response = post_iso(api, repo, 4 * MIB)
    assert response.status_code == 413
    assert "at most" in response.json()["detail"]
    assert contents(area) == [] and not Job.objects.exists()


def test_body_over_the_cap_is_stopped_while_parsed(api, repo, area, settings):
    # The declared length passes (within the framing allowance); counting the file's bytes stops it.
    settings.OVMWEB_UPLOAD_MAX_BYTES = 3 * MIB
    response = post_iso(api, repo, 3 * MIB + 512 * 1024)
    assert response.status_code == 413
    assert contents(area) == [] and not Job.objects.exists()


def test_small_file_over_the_cap_is_400(api, repo, area, settings):
    # Under FILE_UPLOAD_MAX_MEMORY_SIZE the file is parsed into memory: the service refuses it.
    settings.OVMWEB_UPLOAD_MAX_BYTES = 1000
    response = post_iso(api, repo, 4096)
    assert response.status_code == 400 and "file" in response.json()
    assert contents(area) == [] and not Job.objects.exists()


def test_ova_over_the_cap(api, repo, area, settings):
    settings.OVMWEB_UPLOAD_MAX_BYTES = MIB
    body = {"repository": repo.pk, "file": SimpleUploadedFile("big.ova", b"\0" * 4 * MIB)}
    response = api.post("/api/v1/virtual-appliances/", body, format="multipart")
    assert response.status_code == 413
    assert contents(area) == [] and not Job.objects.exists()


def test_web_page_upload_over_the_cap(admin_client, repo, area, settings):
    settings.OVMWEB_UPLOAD_MAX_BYTES = MIB
    response = admin_client.post(
        f"/repositories/{repo.pk}/isos/upload/", {"file": iso(4 * MIB)}, HTTP_ACCEPT="application/json"
    )
    # The page's XHR shows errors["file"].
    assert response.status_code == 413 and response.json()["errors"]["file"]
    response = admin_client.post(
        f"/repositories/{repo.pk}/appliances/import/",
        {"file": SimpleUploadedFile("x.ova", b"\0" * 4 * MIB)},
        HTTP_ACCEPT="application/json",
    )
    assert response.status_code == 413
    assert contents(area) == [] and not Job.objects.exists()


def test_no_room_in_the_staging_area_is_507(api, repo, area, settings):
    settings.OVMWEB_UPLOAD_STAGING_RESERVE_BYTES = 1 << 62
    response = post_iso(api, repo, 4 * MIB)
    assert response.status_code == 507 and "staging area" in response.json()["detail"]
    assert contents(area) == [] and not Job.objects.exists()


# --- staged once, in the staging area ------------------------------------------


def test_a_big_upload_is_streamed_into_the_staging_area_and_renamed(api, repo, area, monkeypatch):
    def no_copy(*args):
        raise AssertionError("the upload was copied, not renamed")

    monkeypatch.setattr(staging, "_copy_capped", no_copy)
    response = post_iso(api, repo, 3 * MIB)
    assert response.status_code == 202, response.content
    staged = Path(Job.objects.get().params["staged"])
    # Exactly one file: the parser's temporary file became the staged one (no second copy).
    assert contents(area) == [staged] and staged.stat().st_size == 3 * MIB


# --- removed however the job ends ----------------------------------------------


def _queued_upload(api, repo, area) -> tuple[Job, Path]:
    response = post_iso(api, repo, 3 * MIB)
    assert response.status_code == 202, response.content
    job = Job.objects.get(pk=response.json()["id"])
    staged = Path(job.params["staged"])
    assert staged.exists()
    return job, staged


def test_aborting_a_queued_upload_removes_its_file(api, repo, area, superuser, django_capture_on_commit_callbacks):
    job, staged = _queued_upload(api, repo, area)
    with django_capture_on_commit_callbacks(execute=True):
        job_request_abort(job=job, user=superuser)
    assert Job.objects.get(pk=job.pk).status == JobStatus.ABORTED
    assert not staged.exists() and contents(area) == []


def test_aborting_a_queued_upload_through_the_api(api, repo, area, django_capture_on_commit_callbacks):
    job, staged = _queued_upload(api, repo, area)
    with django_capture_on_commit_callbacks(execute=True):
        assert api.post(f"/api/v1/jobs/{job.pk}/abort/", {}, format="json").status_code == 200
    assert not staged.exists()


def test_a_failed_upload_job_removes_its_file(api, repo, area, django_capture_on_commit_callbacks):
    job, staged = _queued_upload(api, repo, area)
    with django_capture_on_commit_callbacks(execute=True):
        run_pending_jobs()  # all zeros: not an ISO image, the job fails
    assert Job.objects.get(pk=job.pk).status == JobStatus.FAILURE
    assert not staged.exists() and contents(area) == []


def test_a_job_failed_without_running_removes_its_file(api, repo, area, django_capture_on_commit_callbacks):
    # What recovery does to a queued job whose task was lost: the operation never runs.
    job, staged = _queued_upload(api, repo, area)
    with django_capture_on_commit_callbacks(execute=True):
        job_finish(job=job, status=JobStatus.FAILURE, error="interrupted")
    assert not staged.exists()


def test_a_deleted_job_removes_its_file(api, repo, area, django_capture_on_commit_callbacks):
    job, staged = _queued_upload(api, repo, area)
    with django_capture_on_commit_callbacks(execute=True):
        Job.objects.filter(pk=job.pk).delete()
    assert not staged.exists()


@pytest.mark.parametrize("where", ["outside", "traversal", "symlink", "directory"])
def test_only_files_in_the_staging_area_are_removed(area, tmp_path, where, django_capture_on_commit_callbacks):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    staged = {
        "outside": str(victim),
        "traversal": str(area / ".." / "victim.txt"),
        "symlink": str(area / "link"),
        "directory": str(area),
    }[where]
    if where == "symlink":
        (area / "link").symlink_to(victim)
    job = job_submit(operation="iso.upload", summary="crafted", params={"staged": staged})
    with django_capture_on_commit_callbacks(execute=True):
        job_finish(job=job, status=JobStatus.FAILURE, error="x")
    assert victim.read_text() == "keep me" and area.is_dir()


def test_api_error_body_is_json(api, repo, area, settings):
    settings.OVMWEB_UPLOAD_MAX_BYTES = MIB
    response = post_iso(api, repo, 4 * MIB)
    assert json.loads(response.content)["errors"]["file"]


def test_a_staged_ova_is_removed_when_its_queued_import_is_aborted(
    api, repo, area, superuser, django_capture_on_commit_callbacks
):
    body = {"repository": repo.pk, "file": SimpleUploadedFile("a.ova", ova_bytes())}
    response = api.post("/api/v1/virtual-appliances/", body, format="multipart")
    assert response.status_code == 202, response.content
    staged = Path(Job.objects.get().params["staged"])
    assert staged.exists() and staged.parent == area
    with django_capture_on_commit_callbacks(execute=True):
        job_request_abort(job=Job.objects.get(), user=superuser)
    assert not staged.exists()
