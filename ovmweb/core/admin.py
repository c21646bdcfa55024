"""Django admin that writes through the service layer.

Admin edits obey the same rules as the API: the service is called while the
form is validated, so a refusal (ValidationError, Conflict) shows as an error
on the form that was posted, and nothing is written. The admin's own
``save_model``/``save_related`` then have nothing left to do.
"""

from __future__ import annotations

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.db import transaction
from django.http import HttpResponseRedirect
from django.utils.translation import gettext_lazy as _

from ovmweb.errors import Conflict


def add_service_errors(form, exc: Exception) -> None:
    """Put a service refusal on the form: field errors where the form has the field."""
    if isinstance(exc, ValidationError) and hasattr(exc, "error_dict"):
        for field, errors in exc.message_dict.items():
            target = field if field in form.fields else None
            for message in errors:
                form.add_error(target, message if target or field == "__all__" else f"{field}: {message}")
    elif isinstance(exc, ValidationError):
        for message in exc.messages:
            form.add_error(None, message)
    else:
        form.add_error(None, str(exc))


class ServiceAdmin(admin.ModelAdmin):
    """Subclasses implement ``service_create(request, data)``, ``service_update(request, obj, changes)``
    and ``service_delete(request, obj)``; ``changes`` holds only the fields the user changed."""

    def service_create(self, request, data: dict):
        raise NotImplementedError

    def service_update(self, request, obj, changes: dict):
        raise NotImplementedError

    def service_delete(self, request, obj) -> None:
        raise NotImplementedError

    def get_form(self, request, obj=None, change=False, **kwargs):
        form_class = super().get_form(request, obj, change=change, **kwargs)
        model_admin = self
        original = obj

        class ServiceForm(form_class):
            def _post_clean(self):
                super()._post_clean()
                if self.errors:
                    return
                data = {name: self.cleaned_data[name] for name in self.fields if name in self.cleaned_data}
                try:
                    # A savepoint: a refusal half-way leaves nothing behind.
                    with transaction.atomic():
                        if original is None:
                            self.instance = model_admin.service_create(request, data)
                        else:
                            changes = {name: data[name] for name in self.changed_data if name in data}
                            if changes:
                                self.instance = model_admin.service_update(request, original, changes) or original
                            else:
                                self.instance = original
                except (ValidationError, Conflict) as exc:
                    add_service_errors(self, exc)

        return form_class if request.method != "POST" else ServiceForm

    def save_model(self, request, obj, form, change):
        """Saved by the service during validation."""

    def save_related(self, request, form, formsets, change):
        for formset in formsets:
            self.save_formset(request, form, formset, change=change)

    def delete_model(self, request, obj):
        self.service_delete(request, obj)

    def delete_view(self, request, object_id, extra_context=None):
        try:
            return super().delete_view(request, object_id, extra_context)
        except (ValidationError, Conflict) as exc:
            text = "; ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
            self.message_user(request, text, messages.ERROR)
            return HttpResponseRedirect(request.get_full_path().rsplit("delete/", 1)[0])

    def get_actions(self, request):
        actions = super().get_actions(request)
        # The bulk delete would bypass the service and its rules.
        actions.pop("delete_selected", None)
        return actions


class ReadOnlyAdmin(admin.ModelAdmin):
    """Rows written only by services and jobs: visible, never edited by hand."""

    def has_add_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


def run_service_action(model_admin, request, queryset, fn, done: str) -> None:
    """Apply ``fn(obj)`` to each selected row; refusals (a rule, or a permission on that row)
    become error messages, not 500s."""
    ok = 0
    for obj in queryset:
        try:
            with transaction.atomic():
                fn(obj)
            ok += 1
        except (ValidationError, Conflict, PermissionDenied) as exc:
            text = "; ".join(exc.messages) if isinstance(exc, ValidationError) else str(exc)
            model_admin.message_user(request, f"{obj}: {text}", messages.ERROR)
    if ok:
        model_admin.message_user(request, _("%(n)d %(done)s.") % {"n": ok, "done": done}, messages.SUCCESS)
