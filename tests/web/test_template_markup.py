"""Every template opens as many <div>s as it closes (a stray </div> once sat in a page's
<title> block: the browser tab showed "srv</div>" and the page's layout closed early)."""

import re
from pathlib import Path

import pytest

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"


@pytest.mark.parametrize("path", sorted(TEMPLATES.rglob("*.html")), ids=lambda p: str(p.relative_to(TEMPLATES)))
def test_divs_balance_and_titles_hold_no_markup(path):
    text = re.sub(r"{#.*?#}|{% comment %}.*?{% endcomment %}", "", path.read_text(), flags=re.S)
    assert len(re.findall(r"<div\b", text)) == len(re.findall(r"</div>", text))
    for title in re.findall(r"{% block title %}(.*?){% endblock", text, flags=re.S):
        assert "<" not in title, title
