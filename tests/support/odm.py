"""ODM validation for the export tests: the official ODM 1.3.2 schema that `odmlib` ships, and
the published release files in the team's shared folder when they are there."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from functools import cache
from pathlib import Path

import xmlschema
from odmlib import schema_manager

PUBLISHED = Path(__file__).resolve().parents[3] / "shared" / "odm-1.3.2" / "ODM1-3-2.xsd"


@cache
def odm_schemas() -> tuple[xmlschema.XMLSchema, ...]:
    """Parsed once per test process: parsing the schemas costs about a second."""
    paths = [schema_manager.get_schema_path("odm", "1.3.2")]
    if PUBLISHED.exists():
        paths.append(str(PUBLISHED))
    return tuple(xmlschema.XMLSchema(p) for p in paths)


def valid_odm(schemas, path: Path) -> ET.Element:
    """The document, once every schema accepts it and every OID it references is defined."""
    for schema in schemas:
        schema.validate(str(path))
    root = ET.parse(path).getroot()
    defined = {e.get("OID") for e in root.iter() if e.get("OID")}
    for element in root.iter():
        for name, value in element.attrib.items():
            if name.endswith("OID") and name != "FileOID" and name != "OID":
                assert value in defined, f"{element.tag} {name}={value} is not defined"
    return root
