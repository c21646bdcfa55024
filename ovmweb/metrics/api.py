"""REST endpoints of the metrics: one object's series, and a table's sparklines.

GET /api/v1/{vms,servers,repositories}/{id}/metrics/?range=hour|day|month[&since=<ts>]
GET /api/v1/{vms,servers}/sparklines/?ids=1,2,3

Both ask ``ovmweb.inventory.permissions`` through ``ActionPermission`` like every other
door: viewing an object's metrics is viewing the object (``vm.view`` on that VM...).
"""

from __future__ import annotations

import re

from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy as _lazy
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import permissions, serializers
from rest_framework.exceptions import ValidationError
from rest_framework.generics import GenericAPIView
from rest_framework.response import Response

from ovmweb.api.schema import StrictAutoSchema
from ovmweb.api.views.base import ActionPermission
from ovmweb.inventory import models as m
from ovmweb.inventory.permissions import scope

from . import selectors, series

MAX_SPARKLINES = 200
_ID = re.compile(r"[0-9]{1,18}")
_SIGNED = re.compile(r"-?[0-9]{1,18}")


class SeriesInfoSerializer(serializers.Serializer):
    name = serializers.CharField()
    unit = serializers.CharField()
    label = serializers.CharField()


class MetricsSerializer(serializers.Serializer):
    range = serializers.ChoiceField(choices=list(series.RANGES))
    step = serializers.IntegerField(help_text=_lazy("Seconds between points."))
    series = SeriesInfoSerializer(many=True)
    timestamps = serializers.ListField(
        child=serializers.IntegerField(), help_text=_lazy("Start of each point's interval, seconds since the epoch.")
    )
    values = serializers.DictField(
        child=serializers.ListField(child=serializers.FloatField(allow_null=True)),
        help_text=_lazy("Per series, one value per timestamp (null: not known then)."),
    )


class SparklinesSerializer(serializers.Serializer):
    series = serializers.CharField()
    step = serializers.IntegerField()
    values = serializers.DictField(child=serializers.ListField(child=serializers.FloatField(allow_null=True)))


def _int_param(request, name: str, default=None):
    raw = request.query_params.get(name)
    if raw in (None, ""):
        return default
    if not _SIGNED.fullmatch(raw):
        raise ValidationError({name: [_("A whole number is required.")]})
    return int(raw)


class _Base(GenericAPIView):
    schema = StrictAutoSchema()
    permission_classes = [permissions.IsAuthenticated, ActionPermission]
    pagination_class = None
    lookup_value_regex = r"[0-9]+"
    kind = ""

    @property
    def permission_actions(self) -> dict[str, str]:
        return {"GET": f"{self.kind}.view"}

    def get_queryset(self):
        return scope(self.request.user, f"{self.kind}.view", super().get_queryset())


_RANGE = OpenApiParameter("range", OpenApiTypes.STR, enum=list(series.RANGES), description="hour (default), day, month")
_SINCE = OpenApiParameter("since", OpenApiTypes.INT, description="only points after this time (epoch seconds)")


class ObjectMetricsView(_Base):
    serializer_class = MetricsSerializer

    @extend_schema(parameters=[_RANGE, _SINCE], responses=MetricsSerializer)
    def get(self, request, pk=None, format=None):
        obj = self.get_object()
        range_name = request.query_params.get("range") or "hour"
        if range_name not in series.RANGES:
            raise ValidationError({"range": [_("One of: %s.") % ", ".join(series.RANGES)]})
        since = _int_param(request, "since")
        data = selectors.object_series(series.KINDS[self.kind], obj.pk, range_name, since=since)
        return Response(MetricsSerializer(data).data)


class VmMetricsView(ObjectMetricsView):
    queryset = m.VirtualMachine.objects.all()
    kind = "vm"


class ServerMetricsView(ObjectMetricsView):
    queryset = m.Server.objects.all()
    kind = "server"


class RepositoryMetricsView(ObjectMetricsView):
    queryset = m.Repository.objects.all()
    kind = "repository"


_IDS = OpenApiParameter("ids", OpenApiTypes.STR, description="comma-separated ids (at most 200)")


class SparklinesView(_Base):
    serializer_class = SparklinesSerializer

    @extend_schema(parameters=[_IDS], responses=SparklinesSerializer)
    def get(self, request, format=None):
        raw = [part.strip() for part in (request.query_params.get("ids") or "").split(",") if part.strip()]
        if len(raw) > MAX_SPARKLINES or not all(_ID.fullmatch(part) for part in raw):
            raise ValidationError({"ids": [_("Up to %d comma-separated ids.") % MAX_SPARKLINES]})
        wanted = [int(part) for part in raw]
        visible = list(self.get_queryset().filter(pk__in=wanted).values_list("pk", flat=True))
        column = selectors.SPARK_SERIES[self.kind]
        values = selectors.sparklines(series.KINDS[self.kind], column, visible)
        data = {"series": column, "step": selectors.SPARK_TIER.step, "values": {str(k): v for k, v in values.items()}}
        return Response(SparklinesSerializer(data).data)


class VmSparklinesView(SparklinesView):
    queryset = m.VirtualMachine.objects.all()
    kind = "vm"


class ServerSparklinesView(SparklinesView):
    queryset = m.Server.objects.all()
    kind = "server"
