"""Checks OpenADR 2.0b documents the way openleadr 0.5.36's VTN does before it handles them:
the 2.0b schema (openleadr's own copy, schema/oadr_20b.xsd, with lxml: messaging.
validate_xml_schema), then openleadr's reader (messaging.parse_message). Used by the Swift
codec's tests (Tests/OpenADRTests/SchemaValidationTests.swift) on the VEN documents its
builders write.

    python3 Tests/Integration/openadr_validate.py DIR      one JSON line per DIR/*.xml:
        {"file", "valid", "error", "type", "payload"}      (payload as openleadr reads it)
    python3 Tests/Integration/openadr_validate.py --check  exit 0 when openleadr is importable

Exit status 3 when openleadr or lxml cannot be imported (scripts/setup none installs them).
"""
import json
import math
import sys
from pathlib import Path

try:
    from lxml import etree
    from openleadr.messaging import parse_message, validate_xml_schema
except ImportError as error:  # pragma: no cover - depends on the machine
    print(f"openadr_validate: cannot import openleadr/lxml ({error}); run scripts/setup none", file=sys.stderr)
    sys.exit(3)


def check(path):
    data = path.read_bytes()
    result = {"file": path.name, "valid": True, "error": None, "type": None, "payload": None}
    try:
        validate_xml_schema(data)
    except etree.XMLSyntaxError as error:
        result.update(valid=False, error=str(error))
        return result
    message_type, payload = parse_message(data)
    result.update(type=message_type, payload=payload)
    return result


def plain(value):
    """The payload as strict JSON: a non-finite float (openleadr reads "NaN") as its text."""
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [plain(item) for item in value]
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    return value


def main(argv):
    if argv[1:] == ["--check"]:
        return 0
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    for path in sorted(Path(argv[1]).glob("*.xml")):
        print(json.dumps(plain(check(path)), default=str, sort_keys=True, allow_nan=False))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
