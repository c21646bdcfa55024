"""Why the XML that ovmweb parses with the standard library (libvirt's domain, pool and
capability documents) carries `# nosec B314`: the expat under xml.etree refuses entity
amplification (expat >= 2.4.1) and never fetches external entities. If this Python's
expat lost either property, these tests fail and the marks must go."""

import pyexpat
import xml.etree.ElementTree as ET  # nosec B405  # the point of the test

import pytest


def test_expat_limits_entity_amplification():
    assert pyexpat.version_info >= (2, 4, 1)
    entities = "".join(f'<!ENTITY e{i} "{f"&e{i - 1};" * 10}">' for i in range(1, 10))
    bomb = f'<?xml version="1.0"?><!DOCTYPE b [<!ENTITY e0 "lol">{entities}]><b>&e9;</b>'
    with pytest.raises(ET.ParseError, match="amplification"):
        ET.fromstring(bomb)  # nosec B314  # must be refused


def test_external_entities_are_not_fetched(tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("do-not-read")
    document = f'<?xml version="1.0"?><!DOCTYPE d [<!ENTITY x SYSTEM "file://{secret}">]><d>&x;</d>'
    with pytest.raises(ET.ParseError, match="undefined entity"):
        ET.fromstring(document)  # nosec B314  # must be refused
