"""OPC 30050 (PackML companion specification) object types for the units' ``Status`` and
``Admin`` objects.

The server imports the specification's NodeSet (``nodesets/Opc.Ua.PackML.NodeSet2.xml``,
OPC Foundation, MIT licence) and makes each unit's ``Status`` an instance of
``PackMLStatusObjectType`` and its ``Admin`` one of ``PackMLAdminObjectType``, in place of
plain folders. The type's mandatory variables of ``Status`` are published in the PackML
namespace (``http://opcfoundation.org/UA/PackML/``), with the specification's data types:
``UnitModeCurrent`` (``PackMLUnitModeEnumeration``: 1 Production, 2 Maintenance, 3 Manual),
``MachSpeed`` and ``CurMachSpeed`` (Float), ``EquipmentBlocked`` and ``EquipmentStarved``
(Boolean: the unit waits for room downstream / for material). ``UnitSupportedModes`` (a
NodeId in the NodeSet) is left empty. darkfab's own PackTags (``StateCurrent``, ``ProdProcessedCount``, ...) stay
beside them, in darkfab's namespace, under the same ``Status`` and ``Admin`` objects.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from asyncua import ua

__all__ = ["PackMLTypes", "PACKML_NAMESPACE", "NODESET"]

PACKML_NAMESPACE = "http://opcfoundation.org/UA/PackML/"
NODESET = Path(__file__).parent / "nodesets" / "Opc.Ua.PackML.NodeSet2.xml"
_KINDS = {"UnitModeCurrent": ua.VariantType.Int32, "MachSpeed": ua.VariantType.Float,
          "CurMachSpeed": ua.VariantType.Float, "EquipmentBlocked": ua.VariantType.Boolean,
          "EquipmentStarved": ua.VariantType.Boolean}
PREFIX = "PackML/"
"""Key prefix of the specification's variables in a unit's variable table."""


class PackMLTypes:
    """The imported OPC 30050 types of one server."""

    def __init__(self) -> None:
        self.ns = -1
        self.status_type: Any = None
        self.admin_type: Any = None

    async def load(self, server: Any) -> None:
        """Import the NodeSet into ``server`` (before the units are built)."""
        await server.import_xml(str(NODESET))
        self.ns = await server.get_namespace_index(PACKML_NAMESPACE)
        types = server.nodes.base_object_type
        self.status_type = (await types.get_child(
            [f"{self.ns}:PackMLStatusObjectType"])).nodeid
        self.admin_type = (await types.get_child([f"{self.ns}:PackMLAdminObjectType"])).nodeid

    async def status(self, unit: Any, idx: int) -> tuple[Any, dict[str, tuple[Any, Any]]]:
        """A unit's ``Status`` object and its specification variables: key -> (node, type)."""
        status = await unit.add_object(idx, "Status", objecttype=self.status_type,
                                       instantiate_optional=False)
        out: dict[str, tuple[Any, Any]] = {}
        for name, kind in _KINDS.items():
            out[PREFIX + name] = (await status.get_child([f"{self.ns}:{name}"]), kind)
        return status, out

    async def admin(self, unit: Any, idx: int) -> Any:
        return await unit.add_object(idx, "Admin", objecttype=self.admin_type,
                                     instantiate_optional=False)


def packml_values(e: Any, vals: dict[str, Any]) -> dict[str, Any]:
    """The specification's ``Status`` values of unit observation ``e``, from darkfab's
    PackTags values ``vals`` of the same publication."""
    f32 = float(vals.get("MachSpeed", math.nan))
    return {PREFIX + "UnitModeCurrent": vals["UnitModeCurrent"],
            PREFIX + "MachSpeed": f32,
            PREFIX + "CurMachSpeed": float(vals.get("CurMachSpeed", 0.0)),
            PREFIX + "EquipmentBlocked": e.condition == "blocked",
            PREFIX + "EquipmentStarved": e.condition == "starved"}
