"""Serializers of the REST API (DESIGN.md §5), one module per resource.

They only check the *shape* of a request and render objects; every rule lives
in the service layer, which the viewsets call with the validated data. Read
serializers (``FooSerializer``) and input serializers (``FooCreateSerializer``
...) are separate so that the OpenAPI schema says exactly what is accepted.

Every serializer is importable from this package, as the viewsets name them
(``serializers.VmCreateSerializer``); the shared helpers are in ``base``.
"""

from .appliances import (
    VirtualApplianceImportSerializer,
    VirtualApplianceSerializer,
    VirtualApplianceUploadSerializer,
    VirtualApplianceVmSerializer,
)
from .base import MAX_BIGINT, ErrorDetailSerializer
from .customizers import (
    CloneCustomizerDiskSerializer,
    CloneCustomizerNetworkSerializer,
    CloneCustomizerSerializer,
    CloneCustomizerUpdateSerializer,
)
from .jobs import EventSerializer, JobListSerializer, JobSerializer
from .networks import MacRangeSerializer, NetworkSerializer, VnicCreateSerializer, VnicSerializer
from .pools import (
    AntiAffinityGroupSerializer,
    PoolPoliciesSerializer,
    ProcessorCompatibilityGroupSerializer,
    ServerPoolSerializer,
)
from .repositories import RepositoryCreateSerializer, RepositoryPresentSerializer, RepositorySerializer
from .servers import ServerDiscoverSerializer, ServerMaintenanceSerializer, ServerSerializer, ServerUpdateSerializer
from .storage import (
    IsoFileSerializer,
    IsoImportSerializer,
    IsoUploadSerializer,
    VirtualDiskCreateSerializer,
    VirtualDiskResizeSerializer,
    VirtualDiskSerializer,
)
from .vms import (
    ConsoleTicketSerializer,
    NewDiskSerializer,
    VirtualMachineSerializer,
    VmBackupSerializer,
    VmCloneSerializer,
    VmCreateSerializer,
    VmDiskAttachResultSerializer,
    VmDiskAttachSerializer,
    VmDiskSlotSerializer,
    VmDiskSpecSerializer,
    VmMessageSerializer,
    VmMessagesSerializer,
    VmMigrateSerializer,
    VmMoveSerializer,
    VmSourceSerializer,
    VmUpdateSerializer,
    VmVnicSerializer,
    VmVnicSpecSerializer,
)

__all__ = [
    "PoolPoliciesSerializer",
    "ServerMaintenanceSerializer",
    "MAX_BIGINT",
    "ErrorDetailSerializer",
    "JobSerializer",
    "EventSerializer",
    "JobListSerializer",
    "ServerPoolSerializer",
    "ProcessorCompatibilityGroupSerializer",
    "AntiAffinityGroupSerializer",
    "ServerSerializer",
    "ServerUpdateSerializer",
    "ServerDiscoverSerializer",
    "RepositorySerializer",
    "RepositoryCreateSerializer",
    "RepositoryPresentSerializer",
    "VirtualDiskSerializer",
    "VirtualDiskCreateSerializer",
    "VirtualDiskResizeSerializer",
    "IsoFileSerializer",
    "IsoUploadSerializer",
    "IsoImportSerializer",
    "NetworkSerializer",
    "MacRangeSerializer",
    "VnicSerializer",
    "VnicCreateSerializer",
    "VmDiskSlotSerializer",
    "VmVnicSerializer",
    "VirtualMachineSerializer",
    "VmUpdateSerializer",
    "VmSourceSerializer",
    "NewDiskSerializer",
    "VmDiskSpecSerializer",
    "VmVnicSpecSerializer",
    "VmCreateSerializer",
    "VmMigrateSerializer",
    "VmDiskAttachSerializer",
    "VmCloneSerializer",
    "VmDiskAttachResultSerializer",
    "VmBackupSerializer",
    "VmMoveSerializer",
    "VmMessageSerializer",
    "VmMessagesSerializer",
    "ConsoleTicketSerializer",
    "CloneCustomizerDiskSerializer",
    "CloneCustomizerNetworkSerializer",
    "CloneCustomizerSerializer",
    "CloneCustomizerUpdateSerializer",
    "VirtualApplianceVmSerializer",
    "VirtualApplianceSerializer",
    "VirtualApplianceUploadSerializer",
    "VirtualApplianceImportSerializer",
]
